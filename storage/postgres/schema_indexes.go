package postgres

// migrationKeyPackageIndexes (migration 7) adds relay_secrets
// (storage.Secrets) and gives the KeyPackage table an
// index for every filter shape the relay accepts (storage.Indexable), as
// the events table has: filters by kind or time alone read keypackages by
// created_at and kind, and "#x" tag filters read keypackage_tags, the
// KeyPackage twin of event_tags (single-letter names only, values
// shortened as indexValue does). Before it, a tag filter or a kinds filter
// that reached KeyPackages read the whole table and matched in Go.
//
// keypackage_tags is written by burrow_kp_insert and emptied by a trigger
// on keypackages whatever statement deletes a row. burrow_index_tags reads
// the tags of KeyPackages stored before this migration. It holds tag
// values (KeyPackageRefs, relay URLs, "d" values), never content: the
// bytes that must leave the files after a deletion (docs/keypackage-scrub.md)
// are the content's, which stay in keypackage_content.
const migrationKeyPackageIndexes = `
CREATE INDEX keypackages_created ON keypackages (created_at DESC, id);
CREATE INDEX keypackages_kind ON keypackages (kind, created_at DESC);

CREATE TABLE keypackage_tags (
	id         bytea  NOT NULL,  -- keypackages.id
	name       text   NOT NULL,
	value      bytea  NOT NULL,
	created_at bigint NOT NULL
);
CREATE INDEX keypackage_tags_value ON keypackage_tags (name, value, created_at DESC);
CREATE INDEX keypackage_tags_id ON keypackage_tags (id);

-- burrow_uvarint reads the unsigned varint at byte pos of p (Go's
-- encoding/binary form) and returns it with the position after it.
CREATE FUNCTION burrow_uvarint(p bytea, INOUT pos integer, OUT v bigint)
LANGUAGE plpgsql IMMUTABLE STRICT AS $fn$
DECLARE
	b     integer;
	shift integer := 0;
BEGIN
	v := 0;
	LOOP
		b := get_byte(p, pos);
		pos := pos + 1;
		v := v | ((b & 127)::bigint << shift);
		EXIT WHEN b < 128;
		shift := shift + 7;
	END LOOP;
END
$fn$;

-- burrow_index_tags returns the (name, value) index rows of tags encoded
-- as encodeTags writes them: tags with a value whose name is one letter
-- a-z or A-Z, each pair once, values over 512 bytes shortened to their
-- first 480 bytes and their SHA-256 (indexValue in encode.go).
CREATE FUNCTION burrow_index_tags(p_tags bytea) RETURNS TABLE (name text, value bytea)
LANGUAGE plpgsql IMMUTABLE STRICT AS $fn$
#variable_conflict use_column
DECLARE
	v_pos   integer := 0;
	v_count bigint;
	v_items bigint;
	v_len   bigint;
	v_first bytea;
	v_c     integer;
BEGIN
	SELECT u.pos, u.v INTO v_pos, v_count FROM burrow_uvarint(p_tags, v_pos) u;
	FOR i IN 1 .. v_count LOOP
		SELECT u.pos, u.v INTO v_pos, v_items FROM burrow_uvarint(p_tags, v_pos) u;
		v_first := NULL;
		FOR j IN 1 .. v_items LOOP
			SELECT u.pos, u.v INTO v_pos, v_len FROM burrow_uvarint(p_tags, v_pos) u;
			IF j = 1 THEN
				v_first := substring(p_tags FROM v_pos + 1 FOR v_len::integer);
			ELSIF j = 2 AND length(v_first) = 1 THEN
				v_c := get_byte(v_first, 0);
				IF v_c BETWEEN 65 AND 90 OR v_c BETWEEN 97 AND 122 THEN
					name := chr(v_c);
					value := substring(p_tags FROM v_pos + 1 FOR v_len::integer);
					IF length(value) > 512 THEN
						value := substring(value FROM 1 FOR 480) || sha256(value);
					END IF;
					RETURN NEXT;
				END IF;
			END IF;
			v_pos := v_pos + v_len::integer;
		END LOOP;
	END LOOP;
END
$fn$;

-- A KeyPackage's tag rows are the index rows burrow_save receives for
-- every event (p_tag_names, p_tag_values: encode.go, the same rule as
-- burrow_index_tags), written with the row.
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
	INSERT INTO keypackage_tags (id, name, value, created_at)
	SELECT p_id, t.n, t.v, p_created_at FROM unnest(p_tag_names, p_tag_values) AS t(n, v);
	RETURN true;
END
$fn$;

CREATE FUNCTION burrow_kp_tags_out() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
	DELETE FROM keypackage_tags t WHERE t.id = OLD.id;
	RETURN NULL;
END
$fn$;
CREATE TRIGGER keypackages_tags_out AFTER DELETE ON keypackages
	FOR EACH ROW EXECUTE FUNCTION burrow_kp_tags_out();

INSERT INTO keypackage_tags (id, name, value, created_at)
SELECT DISTINCT k.id, t.name, t.value, k.created_at FROM keypackages k, burrow_index_tags(k.tags) t;

-- storage.Secrets: the relay's own random keys (the Redis bus's), shared by
-- every instance on the database.
CREATE TABLE relay_secrets (
	name  text  PRIMARY KEY,
	value bytea NOT NULL
);
`
