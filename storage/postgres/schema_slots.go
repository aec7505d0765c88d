package postgres

// migrationCommitSlots (migration 4) adds the commit-slot records of
// docs/commit-slots.md. ClaimSlot writes them in its own transaction under
// an advisory lock per (group, slot); the primary keys back that lock up, so
// two instances can never both record a holder. burrow_save is unchanged:
// a plain Save reads these tables only when it is refused as deleted.
// Times are Unix seconds from the store's clock.
const migrationCommitSlots = `
-- The Commit (inner kind 445 id) holding each slot of a group, with its seq.
CREATE TABLE commit_slots (
	h          bytea  NOT NULL,
	slot       bytea  NOT NULL,
	holder     bytea  NOT NULL,
	holder_seq bigint NOT NULL,
	taken_at   bigint NOT NULL,
	PRIMARY KEY (h, slot)
);
CREATE INDEX commit_slots_taken ON commit_slots (taken_at);

-- Commits that lost a slot. Their ids are tombstoned as well, so burrow_save
-- refuses them as deleted; Save then looks here to name the holder.
CREATE TABLE commit_slot_losers (
	id          bytea  PRIMARY KEY,
	h           bytea  NOT NULL,
	slot        bytea  NOT NULL,
	recorded_at bigint NOT NULL
);
CREATE INDEX commit_slot_losers_recorded ON commit_slot_losers (recorded_at);

-- Holders released by a release claim: they stay in the log, flagged.
CREATE TABLE released_commits (
	id          bytea  PRIMARY KEY,
	h           bytea  NOT NULL,
	slot        bytea  NOT NULL,
	released_at bigint NOT NULL
);
CREATE INDEX released_commits_released ON released_commits (released_at);
`
