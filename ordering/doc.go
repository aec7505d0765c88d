// Package ordering owns Burrow's sequencing of kind 445 group events: the
// per-group seq order, ordered fan-out to subscribers, and commit slots
// (at most one Commit granted per MLS epoch; see docs/commit-slots.md).
//
// Only the commit-slot key derivation exists so far: SlotKey turns an
// epoch's exporter secret into the key that signs a kind 20445 claim and the
// slot (its x-only public key) a relay locks on. Sequencing, fan-out and the
// relay's slot rules are not implemented in this package yet.
package ordering
