// Package ordering owns Burrow's sequencing of kind 445 group events beyond
// the storage transaction that numbers them: the ordered live fan-out
// (Fanout: each group's events reach subscribers in seq order whichever
// connection or instance they came through, gaps filled from storage) and
// commit slots (Slots: the server hook for kind 20445 claims, at most one
// Commit granted per MLS epoch; SlotKey and SlotOf derive an epoch's slot
// key; see docs/commit-slots.md). The Redis bus that carries events between
// instances is the redisbus subpackage; the numbering and the atomic slot
// decision live in the storage backends (storage.Store.ClaimSlot).
package ordering
