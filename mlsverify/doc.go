// Package mlsverify proves things about relays, Burrow included, with
// Burrow's own MLS engine (package mls) and Marmot layer (package marmot):
//
//   - Selftest is `relay selftest`: known-answer checks of the engine
//     against values taken from RFC 9420's official test vectors (each
//     cited where it is defined), the official vector files themselves when
//     a directory holding them is given, and a five-member Marmot group
//     taken through a relay (KeyPackages, Welcomes, chat, an update, a
//     removal, a SelfRemove and a commit race);
//   - Run is `relay harness`: simulated members, each with its own Nostr
//     account and MLS state, drive groups through any relay in named
//     scenarios (docs/harness.md states each one's pass/fail rule) and
//     report what the relay's answers made necessary.
//
// Both speak only the public protocol through marmot.Client, which uses
// Burrow's since_seq and commit-slot extensions only where the relay's
// NIP-11 document advertises them, so they run against any relay and never
// rely on Burrow's internals. Starting a relay (for the self-test, or for a
// harness run that restarts it) is the caller's: cmd/relay wires Burrow in.
package mlsverify
