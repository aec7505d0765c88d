//go:build !libsecp256k1

package main

// signatureVerifier names the BIP-340 implementation go-nostr was built
// with; it follows go-nostr's own build tag. Every signature the relay
// checks (EVENT, AUTH, commit-slot claims and the Commits inside them,
// NIP-86 authorization) goes through go-nostr's Event.CheckSignature, so
// this one name covers them all (TestOneSignatureVerifier keeps it so).
const signatureVerifier = "BIP-340 in pure Go (go-nostr, decred secp256k1)"

// libsecp256k1Build reports whether this binary was built with the
// libsecp256k1 tag; relay bench builds the stock khatru baseline the same
// way so both sides verify with the same code.
const libsecp256k1Build = false
