module github.com/burrow-relay/burrow/interop/mlsgo

go 1.26.0

require github.com/thomas-vilte/mls-go v1.6.0

require (
	golang.org/x/crypto v0.53.0 // indirect
	golang.org/x/sys v0.46.0 // indirect
)
