// Package cipher owns the cryptographic primitives of Burrow's MLS engine
// (RFC 9420 section 5 and the labelled helpers of section 8): the supported
// ciphersuites, hashing and RefHash, the labelled KDF functions, MACs, the
// message AEAD, SignWithLabel/VerifyWithLabel, HPKE EncryptWithLabel and
// DecryptWithLabel, KEM key derivation and the (de)serialisation of keys.
//
// Secret material is carried in Secret and in key types whose printed forms
// are redacted, so that a stray log line or %v never reveals key bytes.
//
// Only the standard library (plus golang.org/x/crypto for ChaCha20-Poly1305)
// is used. Suites 0x0001, 0x0002 and 0x0003 are supported; the other
// registered suites are rejected with ErrUnsupportedCipherSuite.
package cipher
