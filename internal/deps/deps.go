// Package deps pins the modules the team builds on while the packages that
// import them are written. Temporary: removed once real imports exist.
package deps

import (
	_ "github.com/btcsuite/btcd/btcec/v2/schnorr"
	_ "github.com/fasthttp/websocket"
	_ "github.com/fiatjaf/khatru"
	_ "github.com/fiatjaf/khatru/policies"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/nbd-wtf/go-nostr"
	_ "github.com/nbd-wtf/go-nostr/nip11"
	_ "github.com/nbd-wtf/go-nostr/nip42"
	_ "github.com/nbd-wtf/go-nostr/nip86"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/redis/go-redis/v9"
	_ "golang.org/x/crypto/chacha20poly1305"
	_ "modernc.org/sqlite"
)
