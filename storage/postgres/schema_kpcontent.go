package postgres

// migrationKeyPackageContent (migration 6) moves KeyPackage content out of
// the keypackages table into keypackage_content, partitioned by author into
// 256 small partitions, so that the rewrite that takes a deleted
// KeyPackage's bytes out of the files (rewriter.go) rewrites one small
// partition instead of every KeyPackage, and locks nothing that burrow_save
// reads: see docs/keypackage-scrub.md.
//
//   - burrow_kp_part maps an author to its partition by a salted hash made
//     at migration time, so no one can pick keys that pile KeyPackages into
//     one partition (its rewrite would grow with them).
//   - keypackages keeps every column, plus part, with content left empty:
//     burrow_kp_insert writes the content into the author's partition once
//     the row is in.
//   - Deleting a row of keypackages deletes its content row and records a
//     debt for its partition (keypackage_scrub), in the same transaction,
//     by a trigger, whichever statement deletes it. The rewriter pays
//     debts; one left by a stopped instance is paid by any other.
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
COMMENT ON COLUMN keypackages.content IS 'always empty: the content is in keypackage_content (burrow_kp_insert)';

-- A KeyPackage's content goes into its author's partition once its row is
-- in keypackages (burrow_kp_insert is the only way in).
CREATE OR REPLACE FUNCTION burrow_kp_insert(
	p_id bytea, p_pubkey bytea, p_created_at bigint, p_kind integer, p_tags bytea, p_content bytea, p_sig bytea,
	p_slot_d bytea, p_expires_at bigint, p_kp_ref bytea, p_tag_names text[], p_tag_values bytea[])
RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
	v_part smallint := burrow_kp_part(p_pubkey);
BEGIN
	INSERT INTO keypackages (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref, part)
	VALUES (p_id, p_pubkey, p_created_at, p_kind, p_tags, '\x'::bytea, p_sig, p_slot_d, p_expires_at, p_kp_ref, v_part)
	ON CONFLICT DO NOTHING;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	INSERT INTO keypackage_content (part, id, content) VALUES (v_part, p_id, p_content);
	RETURN true;
END
$fn$;

-- Deletions come from many statements (burrow_delete, twins, expiry, bans,
-- chunked removals), so a row trigger takes the content out, naming the
-- partition rather than the parent: a statement on the parent that does not
-- prune at planning time would lock every partition. The partition is
-- picked by static statements, generated here two levels deep (16 x 16),
-- so each keeps its cached plan (dynamic SQL would plan every deletion).
DO $do$
DECLARE
	v_body text := '';
	v_inner text;
BEGIN
	FOR hi IN 0 .. 15 LOOP
		v_inner := '';
		FOR lo IN 0 .. 15 LOOP
			v_inner := v_inner || format(E'\t\tWHEN %s THEN DELETE FROM %I WHERE id = OLD.id;\n',
				hi * 16 + lo, 'keypackage_content_' || (hi * 16 + lo));
		END LOOP;
		v_body := v_body || format(E'\tWHEN %s THEN CASE OLD.part\n%s\t\tEND CASE;\n', hi, v_inner);
	END LOOP;
	EXECUTE format($f$
		CREATE FUNCTION burrow_kp_content_out() RETURNS trigger
		LANGUAGE plpgsql AS $b$
		BEGIN
			CASE OLD.part / 16
		%s	END CASE;
			INSERT INTO keypackage_scrub (part) VALUES (OLD.part);
			RETURN NULL;
		END
		$b$$f$, v_body);
END
$do$;
CREATE TRIGGER keypackages_content_out AFTER DELETE ON keypackages
	FOR EACH ROW EXECUTE FUNCTION burrow_kp_content_out();

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
