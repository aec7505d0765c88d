package postgres

// migrationKeyPackages (migration 2) adds what SaveKeyPackage, Ban and
// NIP-62 need and replaces burrow_save with a version that applies them.
//
// Layout notes:
//   - kp_ref is the raw KeyPackageRef of a 443/30443 saved with
//     SaveKeyPackage (NULL otherwise); twins are found by (pubkey, kp_ref).
//   - vanished keeps, per author, the newest request to vanish's created_at,
//     apart from the events, so nothing (a kind 5, a later vanish) can remove
//     what blocks re-submission.
//   - Lock keys (lockKey): 'e' id, 'a' address, 'p' author or gift wrap
//     recipient, 'r' author+KeyPackageRef.
const migrationKeyPackages = `
ALTER TABLE events ADD COLUMN kp_ref bytea;
CREATE INDEX events_kp_ref ON events (pubkey, kp_ref) WHERE kp_ref IS NOT NULL;

CREATE TABLE banned_pubkeys (
	pubkey    bytea       PRIMARY KEY,
	banned_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vanished (
	pubkey bytea  PRIMARY KEY,
	until  bigint NOT NULL
);

DROP FUNCTION burrow_save(bytea, bytea, bytea, bigint, integer, bytea, bytea, bytea, bytea, bytea, bigint, bytea,
	text[], bytea[], integer[], boolean[], bytea[], integer[], bytea[], bytea[]);

-- burrow_save applies every rule of storage.Store.Save (and, when p_kp is
-- true, those of SaveKeyPackage) for one event in the caller's transaction,
-- in one round trip. Status: 0 stored, 1 duplicate, 2 deleted, 3 replaced,
-- 4 not author, 5 banned, 6 slot cap. The caller has taken apart what SQL
-- handles poorly (hex, tag encoding, kind 5 targets, recipients, lock keys).
CREATE FUNCTION burrow_save(
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
	v_has_old boolean;
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
		SELECT EXISTS (SELECT 1 FROM events e WHERE e.id = p_id),
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
		  INTO v_found, v_seq, v_banned, v_blocked;
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
			SELECT e.id, e.created_at, e.kind, e.pubkey INTO v_old FROM events e
			 WHERE e.pubkey = p_pubkey AND e.kind = p_kind AND e.slot_d = p_slot_d
			 FOR UPDATE;
			v_has_old := FOUND;
			IF v_has_old AND (v_old.created_at > p_created_at OR (v_old.created_at = p_created_at AND v_old.id < p_id)) THEN
				o_status := 3;
				RETURN;
			END IF;
			IF NOT v_has_old AND p_kp AND p_kind = 30443 AND p_slot_cap > 0 THEN
				-- A new slot at the cap: the least recently refreshed slots
				-- (as many as it takes to get under the cap; twins of this
				-- KeyPackage are about to go and do not count) must all be
				-- old enough to evict, or nothing happens.
				SELECT coalesce(array_agg(x.id), '{}'), coalesce(bool_and(x.created_at < p_evict_before), true)
				  INTO v_evict, v_can
				  FROM (SELECT e.id, e.created_at FROM events e
				         WHERE e.pubkey = p_pubkey AND e.kind = 30443
				           AND (p_kp_ref IS NULL OR e.kp_ref IS DISTINCT FROM p_kp_ref)
				         ORDER BY e.created_at, e.id
				         LIMIT greatest((SELECT count(*) FROM events c
				                          WHERE c.pubkey = p_pubkey AND c.kind = 30443
				                            AND (p_kp_ref IS NULL OR c.kp_ref IS DISTINCT FROM p_kp_ref)) - p_slot_cap + 1, 0)) x;
				IF NOT v_can THEN
					o_status := 6;
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
			  FROM events e
			  CROSS JOIN LATERAL (SELECT e.pubkey = p_pubkey OR (e.kind = 1059 AND EXISTS (
			        SELECT 1 FROM event_tags t
			         WHERE t.event_id = e.id AND t.name = 'p' AND t.value = p_pubkey_hex)) AS ok) m
			 WHERE e.id = ANY(p_e_ids) AND e.kind NOT IN (5, 62);
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
				SELECT * INTO o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons
				  FROM burrow_delete(v_targets, 'deletion_request', o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons);
			END IF;
		END IF;

		IF p_kind = 62 THEN
			SELECT coalesce(array_agg(e.id), '{}') INTO v_targets
			  FROM events e WHERE e.pubkey = p_pubkey AND e.created_at <= p_created_at;
			SELECT v_targets || coalesce(array_agg(DISTINCT t.event_id), '{}') INTO v_targets
			  FROM event_tags t
			 WHERE t.name = 'p' AND t.value = p_pubkey_hex AND t.kind = 1059 AND t.created_at <= p_created_at;
			IF coalesce(array_length(v_targets, 1), 0) > 0 THEN
				SELECT * INTO o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons
				  FROM burrow_delete(v_targets, 'vanish', o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons);
			END IF;
			INSERT INTO vanished AS v (pubkey, until) VALUES (p_pubkey, p_created_at)
			ON CONFLICT (pubkey) DO UPDATE SET until = greatest(v.until, excluded.until);
		END IF;

		IF v_has_old THEN
			SELECT * INTO o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons
			  FROM burrow_delete(ARRAY[v_old.id], 'replaced', o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons);
		END IF;
		IF coalesce(array_length(v_evict, 1), 0) > 0 THEN
			SELECT * INTO o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons
			  FROM burrow_delete(v_evict, 'evicted', o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons);
		END IF;
		IF p_kp AND p_kp_ref IS NOT NULL THEN
			SELECT coalesce(array_agg(e.id), '{}') INTO v_targets FROM events e
			 WHERE e.pubkey = p_pubkey AND e.kp_ref = p_kp_ref AND e.id <> p_id AND e.kind IN (443, 30443);
			IF coalesce(array_length(v_targets, 1), 0) > 0 THEN
				SELECT * INTO o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons
				  FROM burrow_delete(v_targets, 'twin', o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons);
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

		INSERT INTO events (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, h, seq, kp_ref)
		VALUES (p_id, p_pubkey, p_created_at, p_kind, p_tags, p_content, p_sig, p_slot_d, p_expires_at, p_h, v_seq,
		        CASE WHEN p_kp THEN p_kp_ref END)
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

-- burrow_delete deletes the events with these ids and their tag rows,
-- tombstones the ids that were stored with reason, and returns the
-- deletion lists given, extended with what it removed.
CREATE FUNCTION burrow_delete(
	p_ids bytea[], p_reason text,
	INOUT o_ids bytea[], INOUT o_kinds integer[], INOUT o_pubkeys bytea[], INOUT o_reasons text[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
	WITH d AS (DELETE FROM events e WHERE e.id = ANY(p_ids) RETURNING e.id, e.kind, e.pubkey),
	     t AS (INSERT INTO tombstones (id, reason) SELECT d.id, p_reason FROM d ON CONFLICT DO NOTHING)
	SELECT o_ids || coalesce(array_agg(d.id), '{}'), o_kinds || coalesce(array_agg(d.kind), '{}'),
	       o_pubkeys || coalesce(array_agg(d.pubkey), '{}'),
	       o_reasons || coalesce(array_agg(p_reason), '{}')
	  INTO o_ids, o_kinds, o_pubkeys, o_reasons FROM d;
	DELETE FROM event_tags t WHERE t.event_id = ANY(p_ids);
END
$fn$;
`
