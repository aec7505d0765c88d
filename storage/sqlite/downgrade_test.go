package sqlite

import (
	"database/sql"
	"fmt"
	"testing"
)

// undoSQL reverts each migration above 2, so that tests can rebuild the
// schema an older release left and check the upgrade from it. Data a
// migration dropped (migration 6's tag rows) is not restored.
var undoSQL = map[int]string{
	7: `DROP TABLE admin_event_bans; DROP TABLE admin_pubkey_bans; DROP TABLE admin_blocked_ips; DROP TABLE admin_settings`,
	6: `DROP TABLE secrets`,
	5: `DROP TABLE keypackage_refs_deleted;
DROP INDEX events_kp_author;
CREATE INDEX events_kp_slots ON events (pubkey, created_at) WHERE kind = 30443;
DROP TABLE keypackage_claims;
DROP INDEX commit_slots_holder;
DROP INDEX released_commits_by;
ALTER TABLE released_commits DROP COLUMN seq;
ALTER TABLE released_commits DROP COLUMN released_by`,
	4: `DROP TABLE commit_slots; DROP TABLE commit_slot_losers; DROP TABLE released_commits`,
	3: `DROP INDEX events_kp_ref; DROP INDEX events_kp_slots; DROP INDEX events_vanish;
ALTER TABLE events DROP COLUMN kp_ref; DROP TABLE bans`,
}

// downgradeTo undoes every migration of db above version, newest first,
// leaving the schema (and schema_migrations) as version left them.
func downgradeTo(t *testing.T, db *sql.DB, version int) {
	t.Helper()
	all := migrations()
	for i := len(all) - 1; i >= 0 && all[i].version > version; i-- {
		v := all[i].version
		undo, ok := undoSQL[v]
		if !ok {
			t.Fatalf("no undo for migration %d: add it to undoSQL", v)
		}
		if _, err := db.Exec(undo); err != nil {
			t.Fatalf("undo migration %d: %v", v, err)
		}
		if _, err := db.Exec(`DELETE FROM schema_migrations WHERE version = ?`, v); err != nil {
			t.Fatal(err)
		}
	}
	var newest int
	if err := db.QueryRow(`SELECT MAX(version) FROM schema_migrations`).Scan(&newest); err != nil || newest != version {
		t.Fatal(fmt.Errorf("schema version after the downgrade = %d, %v; want %d", newest, err, version))
	}
}
