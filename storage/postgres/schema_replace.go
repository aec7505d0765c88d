package postgres

// migrationLeanReplace (migration 9) cuts the statements a KeyPackage save
// runs, above all when it replaces a 30443 slot (issue 9: 2,000
// replacements a second), without changing any rule:
//
//   - A replaced 30443 is deleted, tombstoned and its KeyPackage marked
//     dead in one statement inside burrow_save, then its twins are deleted
//     by (author, ref) equality, instead of burrow_delete (which also
//     looks in events and event_tags) calling burrow_bury_twins.
//   - burrow_bury_twins finds the twins through the (pubkey, kp_ref) index
//     (by both columns for one KeyPackage, by author for several) instead
//     of a join with the given pairs that a generic plan made on a new
//     relay's small table ran as a hash join over every KeyPackage with a
//     ref (0.2 ms per deletion at 3,000 KeyPackages, growing with the
//     table and its dead rows).
//   - A save whose KeyPackageRef is new (its keypackage_refs row was just
//     inserted) has no twin, so the twin expiry reads and writes are skipped.
//   - burrow_kp_insert writes the row, its content and its tag rows in one
//     statement.
//   - One delete trigger on keypackages instead of two: the content row
//     out (the static per-partition statements of migration 6), the tag
//     rows out, the partition's scrub debt in.
const migrationLeanReplace = leanReplaceHelpers + burrowSaveV9Head + refusalChecksV9 + burrowSaveV9Tail

const leanReplaceHelpers = `
CREATE OR REPLACE FUNCTION burrow_bury_twins(
	p_pubkeys bytea[], p_refs bytea[], p_keep bytea,
	INOUT o_ids bytea[], INOUT o_kinds integer[], INOUT o_pubkeys bytea[], INOUT o_reasons text[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
	v_pairs bytea[];
	v_pk    bytea;
	v_ref   bytea;
BEGIN
	-- Mark first: the row lock waits out a save of a twin in progress, so
	-- the deletion below, a new statement, sees what it stored.
	WITH m AS (
		INSERT INTO keypackage_refs AS r (ref, deleted_at)
		SELECT DISTINCT x.ref, floor(extract(epoch FROM statement_timestamp()))::bigint
		  FROM unnest(p_refs) AS x(ref)
		 WHERE x.ref IS NOT NULL AND x.ref IS DISTINCT FROM p_keep
		 ORDER BY 1
		ON CONFLICT (ref) DO UPDATE SET deleted_at = coalesce(r.deleted_at, excluded.deleted_at))
	SELECT coalesce(array_agg(x.pk || x.ref), '{}'), (array_agg(x.pk))[1], (array_agg(x.ref))[1]
	  INTO v_pairs, v_pk, v_ref
	  FROM unnest(p_pubkeys, p_refs) AS x(pk, ref)
	 WHERE x.ref IS NOT NULL AND x.ref IS DISTINCT FROM p_keep;
	IF cardinality(v_pairs) = 0 THEN
		RETURN;
	END IF;
	IF cardinality(v_pairs) = 1 OR v_pairs[1] = ALL(v_pairs) THEN
		-- One KeyPackage (a kind 5, an expiry): both index columns by
		-- equality (v_pk, v_ref: the one pair).
		WITH k AS (DELETE FROM keypackages e WHERE e.pubkey = v_pk AND e.kp_ref = v_ref
		           RETURNING e.id, e.kind, e.pubkey),
		     ts AS (INSERT INTO tombstones (id, reason) SELECT k.id, 'twin' FROM k ON CONFLICT DO NOTHING)
		SELECT o_ids || coalesce(array_agg(k.id), '{}'), o_kinds || coalesce(array_agg(k.kind), '{}'),
		       o_pubkeys || coalesce(array_agg(k.pubkey), '{}'),
		       o_reasons || coalesce(array_agg('twin'::text), '{}')
		  INTO o_ids, o_kinds, o_pubkeys, o_reasons FROM k;
		RETURN;
	END IF;
	-- Several (a chunk of a ban or a request to vanish, usually one
	-- author's): by the index, the pair test (a pubkey is 32 bytes, so
	-- pk || ref names one pair) keeping an author's ref from reaching
	-- another author's KeyPackage with the same ref.
	WITH k AS (DELETE FROM keypackages e
	            WHERE e.pubkey = ANY(p_pubkeys) AND e.kp_ref = ANY(p_refs)
	              AND (e.pubkey || e.kp_ref) = ANY(v_pairs)
	           RETURNING e.id, e.kind, e.pubkey),
	     ts AS (INSERT INTO tombstones (id, reason) SELECT k.id, 'twin' FROM k ON CONFLICT DO NOTHING)
	SELECT o_ids || coalesce(array_agg(k.id), '{}'), o_kinds || coalesce(array_agg(k.kind), '{}'),
	       o_pubkeys || coalesce(array_agg(k.pubkey), '{}'),
	       o_reasons || coalesce(array_agg('twin'::text), '{}')
	  INTO o_ids, o_kinds, o_pubkeys, o_reasons FROM k;
END
$fn$;

-- burrow_kp_content_out, regenerated with the tag rows' deletion of
-- burrow_kp_tags_out (migration 7), whose trigger goes: one trigger call
-- per deleted KeyPackage instead of two.
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
		CREATE OR REPLACE FUNCTION burrow_kp_content_out() RETURNS trigger
		LANGUAGE plpgsql AS $b$
		BEGIN
			CASE OLD.part / 16
		%s	END CASE;
			DELETE FROM keypackage_tags t WHERE t.id = OLD.id;
			INSERT INTO keypackage_scrub (part) VALUES (OLD.part);
			RETURN NULL;
		END
		$b$$f$, v_body);
END
$do$;
DROP TRIGGER keypackages_tags_out ON keypackages;
DROP FUNCTION burrow_kp_tags_out();

-- One statement: the row, then its content and tag rows if it went in.
CREATE OR REPLACE FUNCTION burrow_kp_insert(
	p_id bytea, p_pubkey bytea, p_created_at bigint, p_kind integer, p_tags bytea, p_content bytea, p_sig bytea,
	p_slot_d bytea, p_expires_at bigint, p_kp_ref bytea, p_tag_names text[], p_tag_values bytea[])
RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
	v_part smallint := burrow_kp_part(p_pubkey);
	v_in   boolean;
BEGIN
	WITH k AS (
		INSERT INTO keypackages (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref, part)
		VALUES (p_id, p_pubkey, p_created_at, p_kind, p_tags, '\x'::bytea, p_sig, p_slot_d, p_expires_at, p_kp_ref, v_part)
		ON CONFLICT DO NOTHING
		RETURNING id),
	     c AS (INSERT INTO keypackage_content (part, id, content) SELECT v_part, k.id, p_content FROM k),
	     t AS (INSERT INTO keypackage_tags (id, name, value, created_at)
	           SELECT k.id, x.n, x.v, p_created_at FROM k, unnest(p_tag_names, p_tag_values) AS x(n, v))
	SELECT EXISTS (SELECT 1 FROM k) INTO v_in;
	RETURN v_in;
END
$fn$;

`

// burrowSaveV9Head + refusalChecksV9 + burrowSaveV9Tail is migration 9's
// burrow_save. Migration 10 (schema_plain.go) keeps it but for the refusal
// checks, which it moves into burrow_refused.
const burrowSaveV9Head = `CREATE OR REPLACE FUNCTION burrow_save(
	p_id bytea, p_id_hex bytea, p_pubkey bytea, p_created_at bigint, p_kind integer,
	p_tags bytea, p_content bytea, p_sig bytea,
	p_slot_d bytea, p_addr bytea, p_expires_at bigint, p_h bytea,
	p_tag_names text[], p_tag_values bytea[],
	p_lock_keys integer[], p_lock_excl boolean[],
	p_e_ids bytea[], p_a_kinds integer[], p_a_pubkeys bytea[], p_a_ds bytea[],
	p_pubkey_hex bytea, p_recipients bytea[],
	p_kp boolean, p_kp_ref bytea, p_slot_cap integer, p_evict_before bigint,
	OUT o_status integer, OUT o_seq bigint,
	OUT o_del_ids bytea[], OUT o_del_kinds integer[], OUT o_del_pubkeys bytea[], OUT o_del_reasons text[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
	v_seq     bigint;
	v_old     record;
	v_gone    record;
	v_has_old boolean;
	v_fresh   boolean;
	v_targets bytea[];
	v_own     integer;
	v_foreign integer;
	v_rows    bigint;
	v_found   boolean;
	v_blocked boolean;
	v_banned  boolean;
	v_evict   bytea[];
	v_can     boolean;
	v_try     integer := 0;
	-- Whole seconds, rounded down, as the store's clock writes expiries.
	v_now     bigint := floor(extract(epoch FROM statement_timestamp()))::bigint;
	v_exp     bigint;
BEGIN
	-- Locks, in the caller's sorted order: shared on this event's id, its
	-- author and a gift wrap's recipients; exclusive on its slot, kind 5
	-- targets, its KeyPackageRef, and its author for a request to vanish or
	-- a capped 30443. A deletion (kind 5, kind 62, Delete, Ban) and a save
	-- it concerns thus never interleave.
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
`

// refusalChecksV9 is the statement that decides whether an event is refused
// before anything is written: already stored, banned author, tombstoned,
// deleted by a stored kind 5, vanished, or a KeyPackage that died.
const refusalChecksV9 = `		SELECT EXISTS (SELECT 1 FROM events e WHERE e.id = p_id)
		       OR (p_kind IN (443, 30443) AND EXISTS (SELECT 1 FROM keypackages k WHERE k.id = p_id)),
		       (SELECT e.seq FROM events e WHERE e.id = p_id),
		       EXISTS (SELECT 1 FROM banned_pubkeys b WHERE b.pubkey = p_pubkey),
		       EXISTS (SELECT 1 FROM tombstones t WHERE t.id = p_id)
		       -- NIP-09: a stored kind 5 naming this event from its author,
		       -- or from a recipient of a gift wrap (one naming a kind 5 or
		       -- a request to vanish has no effect).
		       OR (p_kind NOT IN (5, 62) AND EXISTS (
		           SELECT 1 FROM event_tags t JOIN events d ON d.id = t.event_id
		            WHERE t.name = 'e' AND t.value = p_id_hex AND t.kind = 5
		              AND (d.pubkey = p_pubkey OR (p_kind = 1059 AND d.pubkey = ANY(p_recipients)))))
		       OR (p_addr IS NOT NULL AND EXISTS (
		           SELECT 1 FROM event_tags t JOIN events d ON d.id = t.event_id
		            WHERE t.name = 'a' AND t.value = p_addr AND t.kind = 5
		              AND t.created_at >= p_created_at AND d.pubkey = p_pubkey))
		       -- NIP-62: the author, or a gift wrap's recipient, vanished at
		       -- or after this event's created_at.
		       OR EXISTS (SELECT 1 FROM vanished v
		            WHERE v.until >= p_created_at
		              AND (v.pubkey = p_pubkey OR (p_kind = 1059 AND v.pubkey = ANY(p_recipients))))
		       -- A KeyPackage that died (the upsert below closes the race).
		       OR (p_kp AND EXISTS (SELECT 1 FROM keypackage_refs r
		            WHERE r.ref = p_kp_ref AND r.deleted_at IS NOT NULL))
`

const burrowSaveV9Tail = `		  INTO v_found, v_seq, v_banned, v_blocked;
		IF v_found THEN
			o_status := 1; o_seq := coalesce(v_seq, 0);
			RETURN;
		END IF;
		IF v_banned THEN
			o_status := 5;
			RETURN;
		END IF;
		IF v_blocked THEN
			o_status := 2;
			RETURN;
		END IF;

		-- Refusals that depend on the slot come before any deletion.
		v_has_old := false;
		v_evict := '{}';
		IF p_slot_d IS NOT NULL THEN
			IF p_kind = 30443 THEN
				SELECT e.id, e.created_at, e.kind, e.pubkey INTO v_old FROM keypackages e
				 WHERE e.pubkey = p_pubkey AND e.kind = p_kind AND e.slot_d = p_slot_d
				 FOR UPDATE;
			ELSE
				SELECT e.id, e.created_at, e.kind, e.pubkey INTO v_old FROM events e
				 WHERE e.pubkey = p_pubkey AND e.kind = p_kind AND e.slot_d = p_slot_d
				 FOR UPDATE;
			END IF;
			v_has_old := FOUND;
			IF v_has_old AND (v_old.created_at > p_created_at OR (v_old.created_at = p_created_at AND v_old.id < p_id)) THEN
				o_status := 3;
				RETURN;
			END IF;
		END IF;
		IF NOT v_has_old AND p_kp AND p_slot_cap > 0 AND NOT (p_kp_ref IS NOT NULL AND EXISTS (
		     SELECT 1 FROM keypackages t WHERE t.pubkey = p_pubkey AND t.kp_ref = p_kp_ref
		        AND (t.expires_at IS NULL OR t.expires_at > v_now))) THEN
			-- A new KeyPackage at the cap (a twin of a live one adds none):
			-- the least recently refreshed KeyPackages (each ref once, by
			-- its newest event), as many as it takes to get under the cap,
			-- must all be old enough to evict, or nothing happens. Each
			-- goes by its newest event; burrow_delete buries the twins.
			WITH u AS (SELECT (array_agg(e.id ORDER BY e.created_at DESC, e.id))[1] AS newest,
			                  max(e.created_at) AS refreshed
			             FROM keypackages e
			            WHERE e.pubkey = p_pubkey AND (e.expires_at IS NULL OR e.expires_at > v_now)
			            GROUP BY coalesce(e.kp_ref, e.id)),
			     r AS (SELECT u.newest, u.refreshed,
			                  row_number() OVER (ORDER BY u.refreshed, u.newest DESC) AS rn,
			                  count(*) OVER () AS n
			             FROM u)
			SELECT coalesce(array_agg(r.newest), '{}'), coalesce(bool_and(r.refreshed < p_evict_before), true)
			  INTO v_evict, v_can
			  FROM r WHERE r.rn <= r.n - p_slot_cap + 1;
			IF NOT v_can THEN
				o_status := 6;
				RETURN;
			END IF;
		END IF;

		-- The KeyPackage's ref row: refused if it died, and locked, so a
		-- deletion burying it (burrow_bury_twins) and this save of a twin
		-- take turns and neither misses the other. Twins expire together,
		-- at the earliest expiry among them. A ref whose row this save
		-- inserts has no other event (every KeyPackage save writes its
		-- ref's row first), so there is no twin expiry to read or align.
		v_exp := p_expires_at;
		v_fresh := true;
		IF p_kp AND p_kp_ref IS NOT NULL THEN
			INSERT INTO keypackage_refs (ref) VALUES (p_kp_ref) ON CONFLICT DO NOTHING;
			v_fresh := FOUND;
			IF NOT v_fresh THEN
				UPDATE keypackage_refs r SET ref = r.ref WHERE r.ref = p_kp_ref AND r.deleted_at IS NULL;
				IF NOT FOUND THEN
					o_status := 2;
					RETURN;
				END IF;
				SELECT least(p_expires_at, min(t.expires_at)) INTO v_exp FROM keypackages t
				 WHERE t.pubkey = p_pubkey AND t.kp_ref = p_kp_ref;
				IF v_exp <= v_now THEN
					o_status := 11;
					RETURN;
				END IF;
			END IF;
		END IF;

		IF p_kind = 5 THEN
			-- The author may delete its own events, and gift wraps whose
			-- "p" names it.
			SELECT coalesce(array_agg(e.id) FILTER (WHERE m.ok), '{}'),
			       count(*) FILTER (WHERE NOT m.ok)
			  INTO v_targets, v_foreign
			  FROM (SELECT x.id, x.pubkey, x.kind FROM events x WHERE x.id = ANY(p_e_ids)
			        UNION ALL
			        SELECT x.id, x.pubkey, x.kind FROM keypackages x WHERE x.id = ANY(p_e_ids)) e
			  CROSS JOIN LATERAL (SELECT e.pubkey = p_pubkey OR (e.kind = 1059 AND EXISTS (
			        SELECT 1 FROM event_tags t
			         WHERE t.event_id = e.id AND t.name = 'p' AND t.value = p_pubkey_hex)) AS ok) m
			 WHERE e.kind NOT IN (5, 62);
			SELECT v_targets || coalesce(array_agg(e.id) FILTER (WHERE a.pk = p_pubkey AND e.created_at <= p_created_at), '{}'),
			       v_foreign + count(*) FILTER (WHERE a.pk <> p_pubkey)
			  INTO v_targets, v_foreign
			  FROM unnest(p_a_kinds, p_a_pubkeys, p_a_ds) AS a(k, pk, d)
			  JOIN (SELECT x.id, x.pubkey, x.kind, x.slot_d, x.created_at FROM events x
			        UNION ALL
			        SELECT x.id, x.pubkey, x.kind, x.slot_d, x.created_at FROM keypackages x) e
			    ON e.pubkey = a.pk AND e.kind = a.k AND e.slot_d = a.d;
			v_own := coalesce(array_length(v_targets, 1), 0);
			IF v_own = 0 AND v_foreign > 0 THEN
				o_status := 4;
				RETURN;
			END IF;
			IF v_own > 0 THEN
				SELECT * INTO o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons
				  FROM burrow_delete(v_targets, 'deletion_request', p_kp_ref, o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons);
			END IF;
		END IF;

		IF p_kind = 62 THEN
			SELECT coalesce(array_agg(e.id), '{}') INTO v_targets
			  FROM (SELECT x.id FROM events x WHERE x.pubkey = p_pubkey AND x.created_at <= p_created_at
			        UNION ALL
			        SELECT x.id FROM keypackages x WHERE x.pubkey = p_pubkey AND x.created_at <= p_created_at) e;
			SELECT v_targets || coalesce(array_agg(DISTINCT t.event_id), '{}') INTO v_targets
			  FROM event_tags t
			 WHERE t.name = 'p' AND t.value = p_pubkey_hex AND t.kind = 1059 AND t.created_at <= p_created_at;
			IF coalesce(array_length(v_targets, 1), 0) > 0 THEN
				SELECT * INTO o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons
				  FROM burrow_delete(v_targets, 'vanish', p_kp_ref, o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons);
			END IF;
			INSERT INTO vanished AS v (pubkey, until) VALUES (p_pubkey, p_created_at)
			ON CONFLICT (pubkey) DO UPDATE SET until = greatest(v.until, excluded.until);
		END IF;

		IF v_has_old AND p_kind = 30443 THEN
			-- The replaced version is a KeyPackage (no events or event_tags
			-- rows): deleted, tombstoned and, unless this save carries the
			-- same KeyPackage on, its KeyPackage marked dead, in one
			-- statement; then its twins, in a new one (burrow_bury_twins'
			-- order: the mark's row lock waits out a twin's save).
			WITH k AS (DELETE FROM keypackages e WHERE e.id = v_old.id RETURNING e.id, e.kind, e.pubkey, e.kp_ref),
			     ts AS (INSERT INTO tombstones (id, reason) SELECT k.id, 'replaced' FROM k ON CONFLICT DO NOTHING),
			     m AS (INSERT INTO keypackage_refs AS r (ref, deleted_at)
			           SELECT k.kp_ref, v_now FROM k WHERE k.kp_ref IS NOT NULL AND k.kp_ref IS DISTINCT FROM p_kp_ref
			           ON CONFLICT (ref) DO UPDATE SET deleted_at = coalesce(r.deleted_at, excluded.deleted_at))
			SELECT k.id, k.kind, k.pubkey, k.kp_ref INTO v_gone FROM k;
			IF FOUND THEN
				o_del_ids := o_del_ids || v_gone.id; o_del_kinds := o_del_kinds || v_gone.kind;
				o_del_pubkeys := o_del_pubkeys || v_gone.pubkey; o_del_reasons := o_del_reasons || 'replaced'::text;
				IF v_gone.kp_ref IS NOT NULL AND v_gone.kp_ref IS DISTINCT FROM p_kp_ref THEN
					WITH k AS (DELETE FROM keypackages e WHERE e.pubkey = v_gone.pubkey AND e.kp_ref = v_gone.kp_ref
					           RETURNING e.id, e.kind, e.pubkey),
					     ts AS (INSERT INTO tombstones (id, reason) SELECT k.id, 'twin' FROM k ON CONFLICT DO NOTHING)
					SELECT o_del_ids || coalesce(array_agg(k.id), '{}'), o_del_kinds || coalesce(array_agg(k.kind), '{}'),
					       o_del_pubkeys || coalesce(array_agg(k.pubkey), '{}'),
					       o_del_reasons || coalesce(array_agg('twin'::text), '{}')
					  INTO o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons FROM k;
				END IF;
			END IF;
		ELSIF v_has_old THEN
			SELECT * INTO o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons
			  FROM burrow_delete(ARRAY[v_old.id], 'replaced', p_kp_ref, o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons);
		END IF;
		IF coalesce(array_length(v_evict, 1), 0) > 0 THEN
			SELECT * INTO o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons
			  FROM burrow_delete(v_evict, 'evicted', p_kp_ref, o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons);
		END IF;
		v_seq := NULL;
		IF p_h IS NOT NULL THEN
			-- The counter row stays locked until commit, which also orders
			-- commits of one group across instances.
			INSERT INTO group_seqs AS g (h, last_seq) VALUES (p_h, 1)
			ON CONFLICT (h) DO UPDATE SET last_seq = g.last_seq + 1
			RETURNING g.last_seq INTO v_seq;
		END IF;

		IF p_kind IN (443, 30443) THEN
			IF burrow_kp_insert(p_id, p_pubkey, p_created_at, p_kind, p_tags, p_content, p_sig, p_slot_d, v_exp,
			                    CASE WHEN p_kp THEN p_kp_ref END, p_tag_names, p_tag_values) THEN
				IF NOT v_fresh AND v_exp IS NOT NULL THEN
					UPDATE keypackages t SET expires_at = v_exp
					 WHERE t.pubkey = p_pubkey AND t.kp_ref = p_kp_ref AND t.id <> p_id
					   AND (t.expires_at IS NULL OR t.expires_at > v_exp);
				END IF;
				RETURN;
			END IF;
		ELSE
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

-- CREATE OR REPLACE resets a function's settings: migration 5's again.
ALTER FUNCTION burrow_save SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION burrow_save SET enable_seqscan = off;
`
