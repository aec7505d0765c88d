package postgres

// migrationCommitSlots (migration 4) adds the commit-slot records of
// docs/commit-slots.md and burrow_claim_slot, which decides a claim in one
// statement. The advisory lock per (group, slot) it takes serializes claims
// on a slot across instances; the primary keys back that lock up, so two
// instances can never both record a holder. burrow_save is unchanged: a
// plain Save reads these tables only when it is refused as deleted.
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

-- burrow_claim_slot decides one claim (storage.Store.ClaimSlot) in the
-- caller's statement, so a claim costs one round trip. p_slot_lock is the
-- lock key of (group, slot), p_id_lock that of the Commit's id (burrow_save
-- takes it shared), p_release the id to release or NULL; the p_id ..
-- p_evict_before arguments are burrow_save's, passed through for the Commit.
-- Status: 0 to 6 are burrow_save's: 0 (stored) and 1 (already stored, as a
-- bare event) mean the Commit now holds the slot with o_seq, and o_released
-- names the holder it released, if any; 2 to 6 are refusals with nothing
-- recorded (for 2, o_holder names the holder of the slot this Commit lost,
-- if it lost one). 7: a retry, the Commit already holds the slot (o_seq;
-- o_released if p_release is a holder released on this slot). 8: taken by
-- o_holder; the Commit is recorded as a loser unless it is stored.
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
	OUT o_status integer, OUT o_seq bigint, OUT o_holder bytea, OUT o_released bytea,
	OUT o_del_ids bytea[], OUT o_del_kinds integer[], OUT o_del_pubkeys bytea[], OUT o_del_reasons text[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
	v_holder bytea;
	v_seq    bigint;
	v_locked boolean := false;
BEGIN
	o_seq := 0;
	-- Lock-free fast path for the common loser, a plain claim on a slot
	-- another Commit holds: its answer needs no lock, as a holder only
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
		SELECT s.holder, s.holder_seq INTO v_holder, v_seq FROM commit_slots s WHERE s.h = p_h AND s.slot = p_slot;
		IF v_holder IS NULL OR (v_holder = p_release AND v_holder <> p_id) THEN
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
				INSERT INTO released_commits (id, h, slot, released_at) VALUES (v_holder, p_h, p_slot, p_now)
				ON CONFLICT (id) DO NOTHING;
				UPDATE commit_slots s SET holder = p_id, holder_seq = o_seq, taken_at = p_now
				 WHERE s.h = p_h AND s.slot = p_slot;
				o_released := v_holder;
			END IF;
			RETURN;
		END IF;
		IF v_holder = p_id THEN
			-- A retry.
			o_status := 7; o_seq := v_seq;
			IF p_release IS NOT NULL AND EXISTS (SELECT 1 FROM released_commits r
			     WHERE r.id = p_release AND r.h = p_h AND r.slot = p_slot) THEN
				o_released := p_release;
			END IF;
			RETURN;
		END IF;
	END IF;

	-- A loser. The exclusive lock on its id waits out a save of the same
	-- Commit (a bare Save, or a release claim carrying it racing the fast
	-- path), so an id that gets stored is never also tombstoned.
	PERFORM pg_advisory_xact_lock(1114993153, p_id_lock);
	IF NOT v_locked THEN
		-- Read again, in a snapshot taken after the lock.
		SELECT s.holder, s.holder_seq INTO v_holder, v_seq FROM commit_slots s WHERE s.h = p_h AND s.slot = p_slot;
		IF v_holder IS NULL THEN
			-- Dropped by retention meanwhile. Taking the slot lock now would
			-- take it after an id lock, against the order above; the caller
			-- retries instead.
			RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
				MESSAGE = 'burrow_claim_slot: the slot was freed during the claim';
		END IF;
		IF v_holder = p_id THEN
			-- A release claim carrying the same Commit won meanwhile.
			o_status := 7; o_seq := v_seq;
			RETURN;
		END IF;
	END IF;
	-- Tombstoned so that burrow_save refuses a bare re-send, and recorded so
	-- that the refusal names the holder. An id already stored stays as it is.
	IF NOT EXISTS (SELECT 1 FROM events e WHERE e.id = p_id) THEN
		INSERT INTO tombstones (id, reason) VALUES (p_id, p_lost_reason) ON CONFLICT DO NOTHING;
		INSERT INTO commit_slot_losers (id, h, slot, recorded_at) VALUES (p_id, p_h, p_slot, p_now)
		ON CONFLICT (id) DO NOTHING;
	END IF;
	o_status := 8; o_holder := v_holder;
END
$fn$;
`
