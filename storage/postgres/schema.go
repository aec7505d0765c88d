package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Advisory lock classes (the first key of the two-key form), so Burrow's
// locks never collide with another application's on the same database.
const (
	lockClassMigrate int32 = 0x42757200 // "Bur\0": schema migrations
	lockClassEvent   int32 = 0x42757201 // per event id, address, author or KeyPackageRef (lockKey); written out in burrow_save
	lockClassSlot    int32 = 0x42757202 // per commit slot (group and slot), written out in burrow_claim_slot
)

type migration struct {
	version int
	name    string
	sql     string
}

// migrations are applied in order, each once, each in its own transaction.
// Never edit one that has shipped; append a new one.
//
// Layout notes:
//   - Event ids, pubkeys and signatures are stored as 32/64 raw bytes.
//     Content, tags and tag values are bytea so that any string a client
//     sends (including U+0000 or invalid UTF-8) round-trips byte for byte.
//   - event_tags holds the single-letter tags (the ones NIP-01 filters can
//     name), keyed by (name, value): a tag value is never indexed without its
//     tag name. kind and created_at are copied in so the NIP-09 checks and
//     ordered tag scans need no join.
//   - slot_d is the replaceable slot's "d" value (empty for replaceable kinds,
//     NULL for others); the partial unique index is what makes two writers
//     unable to both keep a version.
//   - KeyPackages (443/30443) live in a table of their own, keypackages,
//     with no tag rows (migration 3), so it stays small and can be rewritten
//     to scrub deleted bytes (rewriter.go).
var migrations = []migration{
	{1, "events, tags, tombstones, group counters, burrow_save", `
CREATE TABLE events (
	id         bytea   PRIMARY KEY,
	pubkey     bytea   NOT NULL,
	created_at bigint  NOT NULL,
	kind       integer NOT NULL,
	tags       bytea   NOT NULL,
	content    bytea   NOT NULL,
	sig        bytea   NOT NULL,
	slot_d     bytea,
	expires_at bigint,
	h          bytea,
	seq        bigint
);
CREATE UNIQUE INDEX events_slot ON events (pubkey, kind, slot_d) WHERE slot_d IS NOT NULL;
CREATE INDEX events_created ON events (created_at DESC, id);
CREATE INDEX events_pubkey ON events (pubkey, created_at DESC);
CREATE INDEX events_kind ON events (kind, created_at DESC);
CREATE INDEX events_expires ON events (expires_at) WHERE expires_at IS NOT NULL;
CREATE UNIQUE INDEX events_group_seq ON events (h, seq) WHERE h IS NOT NULL;

CREATE TABLE event_tags (
	event_id   bytea   NOT NULL,
	name       text    NOT NULL,
	value      bytea   NOT NULL,
	kind       integer NOT NULL,
	created_at bigint  NOT NULL
);
CREATE INDEX event_tags_value ON event_tags (name, value, created_at DESC);
CREATE INDEX event_tags_event ON event_tags (event_id);

CREATE TABLE tombstones (
	id         bytea       PRIMARY KEY,
	reason     text        NOT NULL,
	deleted_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE group_seqs (
	h        bytea  PRIMARY KEY,
	last_seq bigint NOT NULL
);

-- burrow_save applies every rule of storage.Store.Save for one event in the
-- caller's transaction, in one round trip. Status: 0 stored, 1 duplicate,
-- 2 deleted, 3 replaced, 4 not author. The caller has taken apart what SQL
-- handles poorly (hex, tag encoding, kind 5 targets, lock keys).
CREATE FUNCTION burrow_save(
	p_id bytea, p_id_hex bytea, p_pubkey bytea, p_created_at bigint, p_kind integer,
	p_tags bytea, p_content bytea, p_sig bytea,
	p_slot_d bytea, p_addr bytea, p_expires_at bigint, p_h bytea,
	p_tag_names text[], p_tag_values bytea[],
	p_lock_keys integer[], p_lock_excl boolean[],
	p_e_ids bytea[], p_a_kinds integer[], p_a_pubkeys bytea[], p_a_ds bytea[],
	OUT o_status integer, OUT o_seq bigint,
	OUT o_del_ids bytea[], OUT o_del_kinds integer[], OUT o_del_pubkeys bytea[], OUT o_del_reasons text[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
	v_seq     bigint;
	v_old     record;
	v_targets bytea[];
	v_own     integer;
	v_foreign integer;
	v_rows    bigint;
	v_found   boolean;
	v_blocked boolean;
	v_try     integer := 0;
BEGIN
	-- Locks, in the caller's sorted order: shared on this event's id,
	-- exclusive on its slot and on kind 5 targets. A deletion of an id (kind
	-- 5 or Delete) and a save of that id thus never interleave.
	FOR i IN 1 .. coalesce(array_length(p_lock_keys, 1), 0) LOOP
		IF p_lock_excl[i] THEN
			PERFORM pg_advisory_xact_lock(1114993153, p_lock_keys[i]);
		ELSE
			PERFORM pg_advisory_xact_lock_shared(1114993153, p_lock_keys[i]);
		END IF;
	END LOOP;

	-- Deletions accumulate across retries: what an earlier round removed
	-- stays removed and must be reported.
	o_del_ids := '{}'; o_del_kinds := '{}'; o_del_pubkeys := '{}'; o_del_reasons := '{}';
	LOOP
		v_try := v_try + 1;
		o_status := 0; o_seq := 0;

		-- One statement for every refusal check: statements are what
		-- PL/pgSQL spends its time on.
		SELECT EXISTS (SELECT 1 FROM events e WHERE e.id = p_id),
		       (SELECT e.seq FROM events e WHERE e.id = p_id),
		       EXISTS (SELECT 1 FROM tombstones t WHERE t.id = p_id)
		       -- NIP-09: a stored kind 5 from the same author naming this
		       -- event (one naming a kind 5 has no effect).
		       OR (p_kind <> 5 AND EXISTS (
		           SELECT 1 FROM event_tags t JOIN events d ON d.id = t.event_id
		            WHERE t.name = 'e' AND t.value = p_id_hex AND t.kind = 5 AND d.pubkey = p_pubkey))
		       OR (p_addr IS NOT NULL AND EXISTS (
		           SELECT 1 FROM event_tags t JOIN events d ON d.id = t.event_id
		            WHERE t.name = 'a' AND t.value = p_addr AND t.kind = 5
		              AND t.created_at >= p_created_at AND d.pubkey = p_pubkey))
		  INTO v_found, v_seq, v_blocked;
		IF v_found THEN
			o_status := 1; o_seq := coalesce(v_seq, 0);
			RETURN;
		END IF;
		IF v_blocked THEN
			o_status := 2;
			RETURN;
		END IF;

		IF p_kind = 5 THEN
			SELECT coalesce(array_agg(e.id) FILTER (WHERE e.pubkey = p_pubkey), '{}'),
			       count(*) FILTER (WHERE e.pubkey <> p_pubkey)
			  INTO v_targets, v_foreign
			  FROM events e WHERE e.id = ANY(p_e_ids) AND e.kind <> 5;
			SELECT v_targets || coalesce(array_agg(e.id) FILTER (WHERE a.pk = p_pubkey AND e.created_at <= p_created_at), '{}'),
			       v_foreign + count(*) FILTER (WHERE a.pk <> p_pubkey)
			  INTO v_targets, v_foreign
			  FROM unnest(p_a_kinds, p_a_pubkeys, p_a_ds) AS a(k, pk, d)
			  JOIN events e ON e.pubkey = a.pk AND e.kind = a.k AND e.slot_d = a.d;
			v_own := coalesce(array_length(v_targets, 1), 0);
			IF v_own = 0 AND v_foreign > 0 THEN
				o_status := 4;
				RETURN;
			END IF;
			IF v_own > 0 THEN
				WITH d AS (DELETE FROM events e WHERE e.id = ANY(v_targets) RETURNING e.id, e.kind, e.pubkey)
				SELECT o_del_ids || array_agg(d.id), o_del_kinds || array_agg(d.kind),
				       o_del_pubkeys || array_agg(d.pubkey),
				       o_del_reasons || array_agg('deletion_request'::text)
				  INTO o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons FROM d;
				DELETE FROM event_tags t WHERE t.event_id = ANY(v_targets);
				INSERT INTO tombstones (id, reason)
				SELECT x, 'deletion_request' FROM unnest(v_targets) AS x
				ON CONFLICT DO NOTHING;
			END IF;
		END IF;

		IF p_slot_d IS NOT NULL THEN
			SELECT e.id, e.created_at, e.kind, e.pubkey INTO v_old FROM events e
			 WHERE e.pubkey = p_pubkey AND e.kind = p_kind AND e.slot_d = p_slot_d
			 FOR UPDATE;
			IF FOUND THEN
				IF v_old.created_at > p_created_at OR (v_old.created_at = p_created_at AND v_old.id < p_id) THEN
					o_status := 3;
					RETURN;
				END IF;
				DELETE FROM events e WHERE e.id = v_old.id;
				DELETE FROM event_tags t WHERE t.event_id = v_old.id;
				INSERT INTO tombstones (id, reason) VALUES (v_old.id, 'replaced') ON CONFLICT DO NOTHING;
				o_del_ids := o_del_ids || v_old.id; o_del_kinds := o_del_kinds || v_old.kind;
				o_del_pubkeys := o_del_pubkeys || v_old.pubkey; o_del_reasons := o_del_reasons || 'replaced'::text;
			END IF;
		END IF;

		v_seq := NULL;
		IF p_h IS NOT NULL THEN
			-- The counter row stays locked until commit, which also orders
			-- commits of one group across instances.
			INSERT INTO group_seqs AS g (h, last_seq) VALUES (p_h, 1)
			ON CONFLICT (h) DO UPDATE SET last_seq = g.last_seq + 1
			RETURNING g.last_seq INTO v_seq;
		END IF;

		INSERT INTO events (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, h, seq)
		VALUES (p_id, p_pubkey, p_created_at, p_kind, p_tags, p_content, p_sig, p_slot_d, p_expires_at, p_h, v_seq)
		ON CONFLICT DO NOTHING;
		GET DIAGNOSTICS v_rows = ROW_COUNT;
		IF v_rows > 0 THEN
			INSERT INTO event_tags (event_id, name, value, kind, created_at)
			SELECT p_id, n, v, p_kind, p_created_at FROM unnest(p_tag_names, p_tag_values) AS t(n, v);
			o_seq := coalesce(v_seq, 0);
			RETURN;
		END IF;

		-- Another writer took the id or the slot first. Give the number back
		-- (the counter row is still ours, so no one else took a later one),
		-- undo nothing else (deletions above stay valid), and look again.
		IF v_seq IS NOT NULL THEN
			UPDATE group_seqs g SET last_seq = g.last_seq - 1 WHERE g.h = p_h;
		END IF;
		IF v_try >= 5 THEN
			RAISE EXCEPTION 'burrow_save: event % kept conflicting', encode(p_id, 'hex');
		END IF;
	END LOOP;
END
$fn$;
`},
	{2, "KeyPackage refs and lifetimes, slot cap, bans, requests to vanish, gift wrap deletion by recipient", migrationKeyPackages},
	{3, "KeyPackages in a table of their own", migrationKeyPackageTable},
	{4, "commit slots", migrationCommitSlots},
	{5, "KeyPackage twins coexist and die together; slot cap over both kinds; hand-out claims", migrationKeyPackageTwins},
	{6, "KeyPackage content in small partitions by author, scrubbed one partition at a time", migrationKeyPackageContent},
	{7, "an index for every filter shape on the KeyPackage table; relay secrets", migrationKeyPackageIndexes},
	{8, "NIP-86 records: ban reasons, blocked addresses, settings", migrationAdmin},
	{9, "fewer statements per KeyPackage save and slot replacement; twins found through the (pubkey, kp_ref) index", migrationLeanReplace},
	{10, "a group commit's plain events saved in one statement; refusal checks in burrow_refused", migrationPlainGroups},
}

// migrate applies the migrations not yet recorded. Each runs in its own
// transaction under an advisory lock, so instances starting together apply
// each exactly once and the others wait, then see it applied.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return applyMigrations(ctx, pool, migrations)
}

func applyMigrations(ctx context.Context, pool *pgxpool.Pool, migrations []migration) error {
	for _, m := range migrations {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			// Another instance may hold the migration lock for as long as a
			// migration takes; the store's lock_timeout is for its writes.
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = 0`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, 0)`, lockClassMigrate); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version    integer     PRIMARY KEY,
				name       text        NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
				return err
			}
			var done bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.version).Scan(&done); err != nil {
				return err
			}
			if done {
				return nil
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

// SchemaVersion reports the schema version of the database at connString
// (0 when it holds no Burrow schema yet) and the newest version this binary
// knows. It changes nothing: it reads schema_migrations and runs no
// migration. Its errors name the server without the password.
func SchemaVersion(ctx context.Context, connString string) (current, latest int, err error) {
	latest = migrations[len(migrations)-1].version
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return 0, latest, fmt.Errorf("postgres: connect to %s: %s", RedactURL(connString), scrub(err.Error(), connString))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, latest, fmt.Errorf("postgres: read schema version: %w", err)
	}
	if !exists {
		return 0, latest, nil
	}
	if err := conn.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return 0, latest, fmt.Errorf("postgres: read schema version: %w", err)
	}
	return current, latest, nil
}

// burrowTables are the tables the migrations create in the store's schema
// (partitions aside); TestForeignTables keeps the list equal to what they
// create.
var burrowTables = []string{
	"admin_blocked_ips", "admin_event_bans", "admin_pubkey_bans", "admin_settings",
	"banned_pubkeys", "commit_slot_losers", "commit_slots", "event_tags", "events", "group_seqs",
	"keypackage_claims", "keypackage_content", "keypackage_refs", "keypackage_scrub", "keypackage_tags",
	"keypackages", "relay_secrets", "released_commits", "schema_migrations", "tombstones", "vanished",
}

// foreignTables lists the tables of the store's schema that are not
// Burrow's, so an operator who pointed --database-url at a database in use
// by something else hears of it.
func foreignTables(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	rows, err := pool.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(names, func(n string) bool { return slices.Contains(burrowTables, n) }), nil
}
