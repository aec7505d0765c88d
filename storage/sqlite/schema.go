package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"time"
)

// migration is one versioned schema change. Versions only grow; a released
// migration is never edited, a new one is appended instead. Tests rebuild
// older schemas by undoing migrations (undoSQL in downgrade_test.go): a new
// migration adds its undo there.
type migration struct {
	version int
	name    string
	sql     string
}

func migrations() []migration {
	return []migration{
		{1, "events, tags, tombstones, group sequence counters", `
CREATE TABLE events (
	n           INTEGER PRIMARY KEY,      -- row number, referenced by tags
	id          TEXT    NOT NULL UNIQUE,  -- lowercase hex event id
	pubkey      TEXT    NOT NULL,
	created_at  INTEGER NOT NULL,
	kind        INTEGER NOT NULL,
	tags        TEXT    NOT NULL,         -- JSON array of arrays
	content     TEXT    NOT NULL,
	sig         TEXT    NOT NULL,
	replace_key TEXT,                     -- "kind:pubkey:d" for replaceable/addressable kinds, else NULL
	expires_at  INTEGER,                  -- NIP-40 expiration, NULL if none
	seq         INTEGER NOT NULL DEFAULT 0 -- per-group seq of a kind 445 with one h, else 0
);
-- One stored version per replaceable or addressable slot, whoever writes.
CREATE UNIQUE INDEX events_replace_key ON events (replace_key) WHERE replace_key IS NOT NULL;
CREATE INDEX events_created ON events (created_at DESC, id);
CREATE INDEX events_pubkey ON events (pubkey, created_at DESC);
CREATE INDEX events_kind ON events (kind, created_at DESC);
CREATE INDEX events_expires ON events (expires_at) WHERE expires_at IS NOT NULL;

-- One row per distinct (name, value) of an event's tags that have both; "#x"
-- filters match on name and value together, so a value under another tag
-- name never matches. A single b-tree keeps inserts cheap; deleting an
-- event deletes its rows by this key, from the event's tags column.
CREATE TABLE tags (
	name  TEXT    NOT NULL,
	value TEXT    NOT NULL,
	event INTEGER NOT NULL,  -- events.n
	PRIMARY KEY (name, value, event)
) WITHOUT ROWID;

-- Ids that may never be stored again. Never holds content.
CREATE TABLE tombstones (
	id         TEXT    PRIMARY KEY,
	reason     TEXT    NOT NULL,
	deleted_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The last seq handed out per group; only ever grows.
CREATE TABLE group_seq (
	h        TEXT    PRIMARY KEY,
	last_seq INTEGER NOT NULL
) WITHOUT ROWID;
`},
		// With id in the key, an event lands at a random place among the
		// events of its second, so under load every insert dirtied its own
		// page of this index (one more WAL frame per event). Keyed by
		// created_at and the row number, inserts append; ties by id are
		// sorted per created_at by the query instead.
		{2, "append-only created_at index", `
DROP INDEX events_created;
CREATE INDEX events_created_at ON events (created_at DESC);
`},
		// From here on expires_at holds the effective expiry: the NIP-40
		// expiration or, for a KeyPackage saved with SaveKeyPackage, the
		// earlier of that and its NotAfter. Query, Count and DeleteExpired
		// read only that column, so a KeyPackage's lifetime needs no other.
		{3, "KeyPackage refs, slot and vanish indexes, bans", `
-- KeyPackageRef of a 443/30443 saved with SaveKeyPackage (twins share it);
-- NULL for every other event.
ALTER TABLE events ADD COLUMN kp_ref TEXT;
CREATE INDEX events_kp_ref ON events (pubkey, kp_ref) WHERE kp_ref IS NOT NULL;
-- An author's 30443 slots, oldest first, for the slot cap.
CREATE INDEX events_kp_slots ON events (pubkey, created_at) WHERE kind = 30443;
-- An author's NIP-62 requests, checked by every save.
CREATE INDEX events_vanish ON events (pubkey, created_at) WHERE kind = 62;

-- Authors whose events are refused (NIP-86 banpubkey).
CREATE TABLE bans (
	pubkey    TEXT    PRIMARY KEY,
	banned_at INTEGER NOT NULL
) WITHOUT ROWID;
`},
		// Ordered group reads need the group of each sequenced 445 next to
		// its seq; commit slots need their holders, losers and released
		// holders recorded in the writer's transaction (docs/commit-slots.md).
		// A group's log needs no index of its own: the single writer hands
		// out row numbers and a group's seq numbers in the same order, so
		// the tags key ('h', h, row) already lists a group in seq order
		// (see GroupLog). A (h, seq) index cost a fifth of group ingest.
		{4, "commit slots", `
-- The Commit holding each slot, with its seq and when it took the slot.
CREATE TABLE commit_slots (
	h          TEXT    NOT NULL,
	slot       TEXT    NOT NULL,
	holder     TEXT    NOT NULL,
	holder_seq INTEGER NOT NULL,
	taken_at   INTEGER NOT NULL,
	PRIMARY KEY (h, slot)
) WITHOUT ROWID;
CREATE INDEX commit_slots_taken ON commit_slots (taken_at);

-- Inner ids of Commits that lost a slot; their ids are tombstoned too.
CREATE TABLE commit_slot_losers (
	id          TEXT    PRIMARY KEY,
	h           TEXT    NOT NULL,
	slot        TEXT    NOT NULL,
	recorded_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX commit_slot_losers_recorded ON commit_slot_losers (recorded_at);

-- Holders released by a release claim; they stay in the log, flagged.
CREATE TABLE released_commits (
	id          TEXT    PRIMARY KEY,
	h           TEXT    NOT NULL,
	slot        TEXT    NOT NULL,
	released_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX released_commits_released ON released_commits (released_at);
`},
		// KeyPackage twins coexist and die together (storage.KeyPackage):
		// the refs of dead KeyPackages are tombstoned so that no other
		// event can bring one back, and the slot cap counts an author's
		// KeyPackages of both kinds.
		{5, "KeyPackage ref tombstones, slot cap over both kinds, hand-out claims, one slot per Commit", `
CREATE TABLE keypackage_refs_deleted (
	ref        TEXT    PRIMARY KEY,
	deleted_at INTEGER NOT NULL
) WITHOUT ROWID;
DROP INDEX events_kp_slots;
CREATE INDEX events_kp_author ON events (pubkey, created_at) WHERE kind IN (443, 30443);

-- The opt-in hand-out's claims (storage.HandoutClaims): who holds which
-- KeyPackage until when (Unix milliseconds).
CREATE TABLE keypackage_claims (
	ref       TEXT    PRIMARY KEY,
	event_id  TEXT    NOT NULL,
	requester TEXT    NOT NULL,
	until     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX keypackage_claims_until ON keypackage_claims (until);

-- Commit slots: a Commit holds at most one slot (found by holder), and a
-- release answers with the released Commit's seq.
CREATE INDEX commit_slots_holder ON commit_slots (h, holder);
ALTER TABLE released_commits ADD COLUMN seq INTEGER;
ALTER TABLE released_commits ADD COLUMN released_by TEXT;
CREATE INDEX released_commits_by ON released_commits (released_by) WHERE released_by IS NOT NULL;
`},
		// NIP-01 filters address single-letter tag names only, and Query
		// refuses any other (storage.Indexable), so rows for other names
		// were never read: an event with 2,000 such tags paid for 2,000
		// index rows on save and 2,000 deletions on removal.
		// Secrets: storage.Secrets, the relay's own random keys (the Redis
		// bus's), shared by every process on the file.
		{6, "index single-letter tag names only; relay secrets", `
CREATE TABLE secrets (
	name  TEXT PRIMARY KEY,
	value BLOB NOT NULL
) WITHOUT ROWID;
DELETE FROM tags WHERE NOT (length(name) = 1 AND name GLOB '[A-Za-z]');
`},
		// storage.AdminState: what admins decided through NIP-86 beyond
		// the event rules (the bans themselves are tombstones and bans
		// rows), shared by every process on the file. Times are Unix
		// milliseconds; addresses are netip.Addr text.
		{7, "NIP-86 records: ban reasons, blocked addresses, settings", `
CREATE TABLE admin_event_bans (
	id        TEXT    PRIMARY KEY,
	reason    TEXT    NOT NULL,
	banned_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE admin_pubkey_bans (
	pubkey    TEXT    PRIMARY KEY,
	reason    TEXT    NOT NULL,
	banned_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE admin_blocked_ips (
	addr       TEXT    PRIMARY KEY,
	reason     TEXT    NOT NULL,
	blocked_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE admin_settings (
	name   TEXT    PRIMARY KEY,
	value  TEXT    NOT NULL,
	set_at INTEGER NOT NULL
) WITHOUT ROWID;
`},
	}
}

// migrate applies the migrations db lacks, each in its own transaction with
// its schema_migrations row, so a crash leaves either all of a migration or
// none of it. Reopening an up-to-date database changes nothing. db must begin
// transactions with BEGIN IMMEDIATE, so two processes opening one file at
// once cannot both apply a migration.
func migrate(ctx context.Context, db *sql.DB) (applied int, err error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL,
	applied_at INTEGER NOT NULL
)`); err != nil {
		return 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	all := migrations()
	var newest int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if known := all[len(all)-1].version; newest > known {
		return 0, fmt.Errorf("database schema version %d is newer than this binary's %d", newest, known)
	}
	for _, m := range all {
		done, err := applyMigration(ctx, db, m)
		if err != nil {
			return applied, fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
		}
		if done {
			applied++
		}
	}
	return applied, nil
}

func applyMigration(ctx context.Context, db *sql.DB, m migration) (applied bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var exists bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)`, m.version).Scan(&exists); err != nil {
		return false, err
	}
	if exists {
		return false, tx.Rollback()
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.version, m.name, time.Now().Unix()); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// SchemaVersion reports the schema version of the database file at path (0
// when the file or its schema table does not exist yet) and the newest
// version this binary knows. It changes nothing: the file is read through a
// query-only connection and no migration runs.
func SchemaVersion(ctx context.Context, path string) (current, latest int, err error) {
	all := migrations()
	latest = all[len(all)-1].version
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return 0, latest, nil
	}
	db, err := sql.Open("sqlite", dsn(path, defaultBusyTimeout, url.Values{"_pragma": {"query_only(1)"}}))
	if err != nil {
		return 0, latest, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	defer db.Close()
	// table_info has no row for a table that does not exist.
	cols, err := db.QueryContext(ctx, `PRAGMA table_info(schema_migrations)`)
	if err != nil {
		return 0, latest, fmt.Errorf("sqlite: read %s: %w", path, err)
	}
	exists := cols.Next()
	if err := errors.Join(cols.Err(), cols.Close()); err != nil {
		return 0, latest, fmt.Errorf("sqlite: read %s: %w", path, err)
	}
	if !exists {
		return 0, latest, nil
	}
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return 0, latest, fmt.Errorf("sqlite: read schema version of %s: %w", path, err)
	}
	return current, latest, nil
}
