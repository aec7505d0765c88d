package postgres

// migrationKeyPackageContent (migration 6) moves KeyPackage content out of
// the keypackages table into keypackage_content, partitioned by author into
// 256 small partitions, so that the rewrite that takes a deleted
// KeyPackage's bytes out of the files (rewriter.go) rewrites one small
// partition instead of every KeyPackage, and locks nothing that burrow_save
// reads: see docs/keypackage-scrub.md. It changes no function: triggers on
// keypackages move the content whatever the save and delete functions are.
//
//   - burrow_kp_part maps an author to its partition by a salted hash made
//     at migration time, so no one can pick keys that pile KeyPackages into
//     one partition (its rewrite would grow with them).
//   - keypackages keeps every column (burrow_save writes content there as
//     before), plus part; a trigger moves the content into the author's
//     partition before the row is written and leaves content empty.
//   - Deleting a row of keypackages deletes its content row and records a
//     debt for its partition (keypackage_scrub), in the same transaction.
//     The rewriter pays debts; one left by a stopped instance is paid by
//     any other.
//   - A content row whose keypackages row was not written (ON CONFLICT DO
//     NOTHING after the trigger ran) is removed at commit, with a debt.
//   - keypackage_events is what queries read: keypackages with the content
//     fetched from the author's partition, for the rows a query returns
//     only (PostgreSQL computes an expensive output column after ORDER BY
//     and LIMIT). Only the partitions read are locked.
//   - Autovacuum is off on the partitions: a deletion always leads to a
//     rewrite, and a plain VACUUM run after one would advance relfrozenxid,
//     which the rewriter reads to know its rewrite left no deleted row
//     behind. Anti-wraparound vacuums still run.
//
// The keypackages table is rebuilt rather than updated in place, so its old
// files, which hold the content of every KeyPackage it ever stored, are
// removed. Instances running an older version read content from
// keypackages and would serve it empty: stop them all before upgrading.
const migrationKeyPackageContent = `
DO $do$
BEGIN
	-- 256 partitions: one byte of the hash.
	EXECUTE format($f$
		CREATE FUNCTION burrow_kp_part(p_pubkey bytea) RETURNS smallint
		LANGUAGE sql IMMUTABLE PARALLEL SAFE
		RETURN get_byte(sha256(%L::bytea || p_pubkey), 0)::smallint
	$f$, uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
END
$do$;

CREATE TABLE keypackage_content (
	part    smallint NOT NULL,
	id      bytea    NOT NULL,
	content bytea    NOT NULL,
	PRIMARY KEY (id, part)
) PARTITION BY LIST (part);
DO $do$
BEGIN
	FOR i IN 0 .. 255 LOOP
		EXECUTE format('CREATE TABLE %I PARTITION OF keypackage_content FOR VALUES IN (%s)
			WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)', 'keypackage_content_' || i, i);
	END LOOP;
END
$do$;
-- ANALYZE would copy sample values into pg_statistic, outside the table.
ALTER TABLE keypackage_content ALTER COLUMN content SET STATISTICS 0;

-- Debts: a partition holding deleted content until it is rewritten. xid is
-- the deleting transaction's: a rewrite pays the debts of transactions older
-- than every snapshot it had to respect.
CREATE TABLE keypackage_scrub (
	part       smallint    NOT NULL,
	xid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
	deleted_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX keypackage_scrub_part ON keypackage_scrub (part);

CREATE TABLE keypackages_v6 (
	id         bytea    NOT NULL,
	pubkey     bytea    NOT NULL,
	created_at bigint   NOT NULL,
	kind       integer  NOT NULL,
	tags       bytea    NOT NULL,
	content    bytea    NOT NULL,
	sig        bytea    NOT NULL,
	slot_d     bytea,
	expires_at bigint,
	kp_ref     bytea,
	part       smallint NOT NULL
);
INSERT INTO keypackage_content (part, id, content)
SELECT burrow_kp_part(pubkey), id, content FROM keypackages;
INSERT INTO keypackages_v6 (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref, part)
SELECT id, pubkey, created_at, kind, tags, '\x'::bytea, sig, slot_d, expires_at, kp_ref, burrow_kp_part(pubkey)
  FROM keypackages;
DROP TABLE keypackages;
ALTER TABLE keypackages_v6 RENAME TO keypackages;
ALTER TABLE keypackages ADD PRIMARY KEY (id);
CREATE UNIQUE INDEX keypackages_slot ON keypackages (pubkey, kind, slot_d) WHERE slot_d IS NOT NULL;
CREATE INDEX keypackages_pubkey ON keypackages (pubkey, created_at DESC);
CREATE INDEX keypackages_expires ON keypackages (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX keypackages_kp_ref ON keypackages (pubkey, kp_ref) WHERE kp_ref IS NOT NULL;
ALTER TABLE keypackages ALTER COLUMN content SET STATISTICS 0, ALTER COLUMN tags SET STATISTICS 0,
	ALTER COLUMN sig SET STATISTICS 0, ALTER COLUMN slot_d SET STATISTICS 0, ALTER COLUMN kp_ref SET STATISTICS 0;
COMMENT ON COLUMN keypackages.content IS 'always empty: the content is in keypackage_content (burrow_kp_content_in)';

CREATE FUNCTION burrow_kp_content_in() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
	NEW.part := burrow_kp_part(NEW.pubkey);
	-- An id names one event, so a content row already there is this one's.
	INSERT INTO keypackage_content (part, id, content) VALUES (NEW.part, NEW.id, NEW.content)
	ON CONFLICT DO NOTHING;
	NEW.content := '\x'::bytea;
	RETURN NEW;
END
$fn$;
CREATE TRIGGER keypackages_content_in BEFORE INSERT ON keypackages
	FOR EACH ROW EXECUTE FUNCTION burrow_kp_content_in();

-- The partition is named, not the parent: a statement on the parent that
-- does not prune at planning time would lock every partition.
CREATE FUNCTION burrow_kp_content_out() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
	EXECUTE format('DELETE FROM %I WHERE id = $1', 'keypackage_content_' || OLD.part) USING OLD.id;
	INSERT INTO keypackage_scrub (part) VALUES (OLD.part);
	RETURN NULL;
END
$fn$;
CREATE TRIGGER keypackages_content_out AFTER DELETE ON keypackages
	FOR EACH ROW EXECUTE FUNCTION burrow_kp_content_out();

CREATE FUNCTION burrow_kp_content_orphan() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM keypackages k WHERE k.id = NEW.id) THEN
		EXECUTE format('DELETE FROM %I WHERE id = $1', TG_TABLE_NAME) USING NEW.id;
		INSERT INTO keypackage_scrub (part) VALUES (NEW.part);
	END IF;
	RETURN NULL;
END
$fn$;
CREATE CONSTRAINT TRIGGER keypackage_content_orphan AFTER INSERT ON keypackage_content
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION burrow_kp_content_orphan();

-- STABLE: the lookup runs in the calling query's snapshot, so it finds the
-- content of every row that query sees, even one deleted since.
CREATE FUNCTION burrow_kp_content(p_part smallint, p_id bytea) RETURNS bytea
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
	v bytea;
BEGIN
	EXECUTE format('SELECT content FROM %I WHERE id = $1', 'keypackage_content_' || p_part) INTO v USING p_id;
	IF v IS NULL THEN
		RAISE EXCEPTION 'burrow_kp_content: KeyPackage % has no content row', encode(p_id, 'hex');
	END IF;
	RETURN v;
END
$fn$;
CREATE VIEW keypackage_events AS
SELECT k.id, k.pubkey, k.created_at, k.kind, k.tags, burrow_kp_content(k.part, k.id) AS content, k.sig,
       k.slot_d, k.expires_at, k.kp_ref
  FROM keypackages k;
`
