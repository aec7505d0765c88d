//go:build libsecp256k1

package main

// signatureVerifier names the BIP-340 implementation go-nostr was built
// with; it follows go-nostr's own build tag.
const signatureVerifier = "BIP-340 by libsecp256k1 (go-nostr, cgo)"
