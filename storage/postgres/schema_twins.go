package postgres

// migrationKeyPackageTwins (migration 5) keeps the opt-in hand-out's claims
// in the database (keypackage_claims) and makes KeyPackage twins coexist and
// die together (storage.KeyPackage): saving a twin deletes nothing; every
// deletion buries the KeyPackages it removed (burrow_bury_twins: their other
// events go with reason twin, their refs are marked dead in keypackage_refs
// so that no other event can bring one back); the slot cap counts an
// author's KeyPackages of both kinds, one per ref. burrow_save and
// burrow_delete are redefined whole (a migration is a snapshot of them).
//
// keypackage_refs has one row per KeyPackage ever saved with its rules:
// live (deleted_at NULL) or dead. A save of a KeyPackage upserts its row
// and a burial updates it, so the two lock the same row and take turns: a
// twin saved while its KeyPackage is being buried is either refused or
// buried with it, never left behind.
const migrationKeyPackageTwins = `
CREATE TABLE keypackage_refs (
	ref        bytea  PRIMARY KEY,
	deleted_at bigint
);
INSERT INTO keypackage_refs (ref) SELECT DISTINCT kp_ref FROM keypackages WHERE kp_ref IS NOT NULL
ON CONFLICT DO NOTHING;

-- The opt-in hand-out's claims (storage.HandoutClaims): who holds which
-- KeyPackage until when (Unix milliseconds).
CREATE TABLE keypackage_claims (
	ref       bytea  PRIMARY KEY,
	event_id  bytea  NOT NULL,
	requester bytea  NOT NULL,
	until     bigint NOT NULL
);
CREATE INDEX keypackage_claims_until ON keypackage_claims (until);

DROP FUNCTION burrow_delete(bytea[], text, bytea[], integer[], bytea[], text[]);

-- burrow_bury_twins finishes the deaths of KeyPackages one of whose events
-- was just removed, given as (author, ref) pairs: every ref but p_keep (the
-- KeyPackage a save carries on) is marked dead, and its remaining events
-- are deleted and tombstoned with reason twin. Returns the deletion lists
-- given, extended.
CREATE FUNCTION burrow_bury_twins(
	p_pubkeys bytea[], p_refs bytea[], p_keep bytea,
	INOUT o_ids bytea[], INOUT o_kinds integer[], INOUT o_pubkeys bytea[], INOUT o_reasons text[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
	-- Mark first: the row lock waits out a save of a twin in progress, so
	-- the deletion below, a new statement, sees what it stored.
	INSERT INTO keypackage_refs AS r (ref, deleted_at)
	SELECT DISTINCT x.ref, floor(extract(epoch FROM statement_timestamp()))::bigint
	  FROM unnest(p_refs) AS x(ref)
	 WHERE x.ref IS NOT NULL AND x.ref IS DISTINCT FROM p_keep
	 ORDER BY 1
	ON CONFLICT (ref) DO UPDATE SET deleted_at = coalesce(r.deleted_at, excluded.deleted_at);
	WITH k AS (DELETE FROM keypackages e
	            USING (SELECT DISTINCT x.pk, x.ref FROM unnest(p_pubkeys, p_refs) AS x(pk, ref)
	                    WHERE x.ref IS NOT NULL AND x.ref IS DISTINCT FROM p_keep) t
	            WHERE e.pubkey = t.pk AND e.kp_ref = t.ref
	           RETURNING e.id, e.kind, e.pubkey),
	     ts AS (INSERT INTO tombstones (id, reason) SELECT k.id, 'twin' FROM k ON CONFLICT DO NOTHING)
	SELECT o_ids || coalesce(array_agg(k.id), '{}'), o_kinds || coalesce(array_agg(k.kind), '{}'),
	       o_pubkeys || coalesce(array_agg(k.pubkey), '{}'),
	       o_reasons || coalesce(array_agg('twin'::text), '{}')
	  INTO o_ids, o_kinds, o_pubkeys, o_reasons FROM k;
END
$fn$;

-- burrow_delete deletes the events with these ids (from either table) and
-- their tag rows, tombstones the ids it removed with reason, buries the
-- KeyPackages it removed (except p_keep), and returns the deletion lists
-- given, extended with what it removed.
CREATE FUNCTION burrow_delete(
	p_ids bytea[], p_reason text, p_keep bytea,
	INOUT o_ids bytea[], INOUT o_kinds integer[], INOUT o_pubkeys bytea[], INOUT o_reasons text[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
	v_pks  bytea[];
	v_refs bytea[];
BEGIN
	WITH d AS (DELETE FROM events e WHERE e.id = ANY(p_ids) RETURNING e.id, e.kind, e.pubkey, NULL::bytea AS kp_ref),
	     k AS (DELETE FROM keypackages e WHERE e.id = ANY(p_ids) RETURNING e.id, e.kind, e.pubkey, e.kp_ref),
	     u AS (SELECT * FROM d UNION ALL SELECT * FROM k),
	     t AS (INSERT INTO tombstones (id, reason) SELECT u.id, p_reason FROM u ON CONFLICT DO NOTHING)
	SELECT o_ids || coalesce(array_agg(u.id), '{}'), o_kinds || coalesce(array_agg(u.kind), '{}'),
	       o_pubkeys || coalesce(array_agg(u.pubkey), '{}'),
	       o_reasons || coalesce(array_agg(p_reason), '{}'),
	       coalesce(array_agg(u.pubkey) FILTER (WHERE u.kp_ref IS NOT NULL), '{}'),
	       coalesce(array_agg(u.kp_ref) FILTER (WHERE u.kp_ref IS NOT NULL), '{}')
	  INTO o_ids, o_kinds, o_pubkeys, o_reasons, v_pks, v_refs FROM u;
	DELETE FROM event_tags t WHERE t.event_id = ANY(p_ids);
	IF coalesce(array_length(v_refs, 1), 0) > 0 THEN
		SELECT * INTO o_ids, o_kinds, o_pubkeys, o_reasons
		  FROM burrow_bury_twins(v_pks, v_refs, p_keep, o_ids, o_kinds, o_pubkeys, o_reasons);
	END IF;
END
$fn$;

-- burrow_kp_insert stores a KeyPackage event unless its id or slot is
-- taken, and reports whether it did. It is burrow_save's only way into the
-- KeyPackage tables, so that later migrations change how a KeyPackage is
-- stored (6: content in partitions; 7: tag rows) by redefining it alone.
CREATE FUNCTION burrow_kp_insert(
	p_id bytea, p_pubkey bytea, p_created_at bigint, p_kind integer, p_tags bytea, p_content bytea, p_sig bytea,
	p_slot_d bytea, p_expires_at bigint, p_kp_ref bytea, p_tag_names text[], p_tag_values bytea[])
RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
	-- No tag rows: KeyPackage tags are matched by scanning this small
	-- table, so no index keeps their values.
	INSERT INTO keypackages (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref)
	VALUES (p_id, p_pubkey, p_created_at, p_kind, p_tags, p_content, p_sig, p_slot_d, p_expires_at, p_kp_ref)
	ON CONFLICT DO NOTHING;
	RETURN FOUND;
END
$fn$;

-- burrow_save applies every rule of storage.Store.Save (and, when p_kp is
-- true, those of SaveKeyPackage) for one event in the caller's transaction,
-- in one round trip. Status: 0 stored, 1 duplicate, 2 deleted (also a
-- KeyPackage whose ref died), 3 replaced, 4 not author, 5 banned, 6 slot
-- cap, 11 expired (a KeyPackage whose twin expired). The caller has taken apart what SQL handles poorly (hex, tag
-- encoding, kind 5 targets, recipients, lock keys).
CREATE OR REPLACE FUNCTION burrow_save(
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
		SELECT EXISTS (SELECT 1 FROM events e WHERE e.id = p_id)
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
		-- at the earliest expiry among them.
		v_exp := p_expires_at;
		IF p_kp AND p_kp_ref IS NOT NULL THEN
			INSERT INTO keypackage_refs AS r (ref) VALUES (p_kp_ref)
			ON CONFLICT (ref) DO UPDATE SET ref = excluded.ref WHERE r.deleted_at IS NULL;
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

		IF v_has_old THEN
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
				IF p_kp AND p_kp_ref IS NOT NULL AND v_exp IS NOT NULL THEN
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

ALTER FUNCTION burrow_save SET plan_cache_mode = force_generic_plan;
-- Every statement of a save (and of a claim, below) finds its rows by an
-- index. On a small table (a new relay's) the planner prefers sequential
-- scans, and a generic plan made then is kept for the session, while each
-- replacement leaves a dead row that such a scan reads again: a relay with
-- a few hundred KeyPackages spent more on scans than on its writes.
ALTER FUNCTION burrow_save SET enable_seqscan = off;

-- Commit slots, second pass (docs/commit-slots.md): a Commit holds at most
-- one slot; once it lost one (or held one and was released) it never holds
-- one again, also when it is stored as a bare event; a release answers with
-- the released Commit's seq.
CREATE INDEX commit_slots_holder ON commit_slots (h, holder);
ALTER TABLE released_commits ADD COLUMN seq bigint, ADD COLUMN released_by bytea;
CREATE INDEX released_commits_by ON released_commits (released_by) WHERE released_by IS NOT NULL;

DROP FUNCTION burrow_claim_slot(bytea, bytea, integer, integer, bigint, text,
	bytea, bytea, bytea, bigint, integer, bytea, bytea, bytea, bytea, bytea, bigint, bytea,
	text[], bytea[], integer[], boolean[], bytea[], integer[], bytea[], bytea[], bytea, bytea[],
	boolean, bytea, integer, bigint);

-- burrow_claim_slot decides one claim (storage.Store.ClaimSlot) in the
-- caller's statement, so a claim costs one round trip. p_slot_lock is the
-- lock key of (group, slot), p_id_lock that of the Commit's id (burrow_save
-- takes it shared), p_release the id to release or NULL; the p_id ..
-- p_evict_before arguments are burrow_save's, passed through for the Commit.
-- Status: 0 to 6 are burrow_save's: 0 (stored) and 1 (already stored, as a
-- bare event) mean the Commit now holds the slot with o_seq, and o_released
-- (o_released_seq) names the holder it released, if any; 2 to 6 are
-- refusals with nothing recorded (for 2, o_holder names the holder of the
-- slot this Commit lost, if it lost one). 7: a retry, the Commit already
-- holds the slot (o_seq; o_released if p_release is a holder released on
-- this slot). 8: taken by o_holder; the Commit is recorded as a loser
-- unless it lost before. 9: the Commit lost slot o_slot (now held by
-- o_holder) before. 10: the Commit holds slot o_slot.
-- Locks: the slot's, then the Commit's id (exclusive), so claims of one
-- Commit on two slots, and a claim racing a bare save of its Commit, take
-- turns. Waits are bounded by the connection's lock_timeout.
CREATE FUNCTION burrow_claim_slot(
	p_slot bytea, p_release bytea, p_slot_lock integer, p_id_lock integer, p_now bigint, p_lost_reason text,
	p_id bytea, p_id_hex bytea, p_pubkey bytea, p_created_at bigint, p_kind integer,
	p_tags bytea, p_content bytea, p_sig bytea,
	p_slot_d bytea, p_addr bytea, p_expires_at bigint, p_h bytea,
	p_tag_names text[], p_tag_values bytea[],
	p_lock_keys integer[], p_lock_excl boolean[],
	p_e_ids bytea[], p_a_kinds integer[], p_a_pubkeys bytea[], p_a_ds bytea[],
	p_pubkey_hex bytea, p_recipients bytea[],
	p_kp boolean, p_kp_ref bytea, p_slot_cap integer, p_evict_before bigint,
	OUT o_status integer, OUT o_seq bigint, OUT o_holder bytea, OUT o_released bytea, OUT o_released_seq bigint,
	OUT o_slot bytea,
	OUT o_del_ids bytea[], OUT o_del_kinds integer[], OUT o_del_pubkeys bytea[], OUT o_del_reasons text[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
	v_holder bytea;
	v_seq    bigint;
	v_lost   bytea;
	v_locked boolean := false;
BEGIN
	o_seq := 0;
	-- Lock-free fast path for the common loser, a plain claim on a slot
	-- another Commit holds: its answer needs no slot lock, as a holder only
	-- changes by a release. The holder named is the one committed when this
	-- statement read it, so it may be at most one release stale, as if the
	-- claim had been decided just before that release.
	IF p_release IS NULL THEN
		SELECT s.holder INTO v_holder FROM commit_slots s WHERE s.h = p_h AND s.slot = p_slot;
	END IF;
	IF v_holder IS NULL OR v_holder = p_id THEN
		-- lockClassSlot in schema.go; held to commit.
		PERFORM pg_advisory_xact_lock(1114993154, p_slot_lock);
		v_locked := true;
	END IF;
	-- lockClassEvent: exclusive on the Commit's id.
	PERFORM pg_advisory_xact_lock(1114993153, p_id_lock);
	SELECT s.holder, s.holder_seq INTO v_holder, v_seq FROM commit_slots s WHERE s.h = p_h AND s.slot = p_slot;

	IF v_holder = p_id THEN
		-- A retry.
		o_status := 7; o_seq := v_seq;
		IF p_release IS NOT NULL THEN
			SELECT r.id, coalesce(r.seq, 0) INTO o_released, o_released_seq FROM released_commits r
			 WHERE r.id = p_release AND r.h = p_h AND r.slot = p_slot;
		END IF;
		RETURN;
	END IF;

	-- The Commit's own past: a loser (or a released holder) never holds a
	-- slot again, and a holder holds only one.
	SELECT x.slot INTO v_lost FROM (
		SELECT l.slot FROM commit_slot_losers l WHERE l.id = p_id AND l.h = p_h
		UNION ALL SELECT r.slot FROM released_commits r WHERE r.id = p_id AND r.h = p_h) x LIMIT 1;
	IF v_lost IS NOT NULL THEN
		IF v_lost = p_slot THEN
			o_status := 8; o_holder := v_holder;
		ELSE
			o_status := 9; o_slot := v_lost;
			SELECT s.holder INTO o_holder FROM commit_slots s WHERE s.h = p_h AND s.slot = v_lost;
		END IF;
		RETURN;
	END IF;
	SELECT s.slot INTO o_slot FROM commit_slots s WHERE s.h = p_h AND s.holder = p_id LIMIT 1;
	IF o_slot IS NOT NULL THEN
		o_status := 10;
		RETURN;
	END IF;

	IF v_holder IS NULL OR (p_release IS NOT NULL AND v_holder = p_release) THEN
		IF NOT v_locked THEN
			-- Freed by retention after the fast path's read. Taking the slot
			-- lock now would take it after the id lock, against the order
			-- above; the caller retries instead.
			RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
				MESSAGE = 'burrow_claim_slot: the slot was freed during the claim';
		END IF;
		-- Free, or the claim releases the holder: the Commit takes it.
		SELECT r.o_status, r.o_seq, r.o_del_ids, r.o_del_kinds, r.o_del_pubkeys, r.o_del_reasons
		  INTO o_status, o_seq, o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons
		  FROM burrow_save(p_id, p_id_hex, p_pubkey, p_created_at, p_kind, p_tags, p_content, p_sig,
		       p_slot_d, p_addr, p_expires_at, p_h, p_tag_names, p_tag_values, p_lock_keys, p_lock_excl,
		       p_e_ids, p_a_kinds, p_a_pubkeys, p_a_ds, p_pubkey_hex, p_recipients,
		       p_kp, p_kp_ref, p_slot_cap, p_evict_before) r;
		IF o_status > 1 THEN
			-- For a kind 445, burrow_save refuses before it writes.
			IF o_status = 2 THEN
				SELECT s.holder INTO o_holder FROM commit_slot_losers l
				  JOIN commit_slots s ON s.h = l.h AND s.slot = l.slot WHERE l.id = p_id;
			END IF;
			RETURN;
		END IF;
		IF v_holder IS NULL THEN
			INSERT INTO commit_slots (h, slot, holder, holder_seq, taken_at) VALUES (p_h, p_slot, p_id, o_seq, p_now);
		ELSE
			INSERT INTO released_commits (id, h, slot, released_at, seq, released_by) VALUES (v_holder, p_h, p_slot, p_now, v_seq, p_id)
			ON CONFLICT (id) DO NOTHING;
			UPDATE commit_slots s SET holder = p_id, holder_seq = o_seq, taken_at = p_now
			 WHERE s.h = p_h AND s.slot = p_slot;
			o_released := v_holder; o_released_seq := v_seq;
		END IF;
		RETURN;
	END IF;

	-- A loser, recorded so that it never holds a slot. One not stored is
	-- tombstoned too, so that burrow_save refuses a bare re-send (naming
	-- the holder); an id already stored stays a plain event of the log.
	IF NOT EXISTS (SELECT 1 FROM events e WHERE e.id = p_id) THEN
		INSERT INTO tombstones (id, reason) VALUES (p_id, p_lost_reason) ON CONFLICT DO NOTHING;
	END IF;
	INSERT INTO commit_slot_losers (id, h, slot, recorded_at) VALUES (p_id, p_h, p_slot, p_now)
	ON CONFLICT (id) DO NOTHING;
	o_status := 8; o_holder := v_holder;
END
$fn$;

ALTER FUNCTION burrow_claim_slot SET enable_seqscan = off;
`
