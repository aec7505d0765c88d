package postgres

// migrationPlainGroups (migration 10) lets a writer save the plain events of
// a group commit in one set-based statement instead of one burrow_save call
// each, without a second copy of any rule:
//
//   - burrow_refused holds the refusal checks (migration 9's statement,
//     refusalChecksV9, with each EXISTS kept a probe) as an SQL function
//     that PostgreSQL inlines into the statement calling it.
//   - burrow_save is migration 9's but for that statement, which now reads
//     burrow_refused.
//   - burrow_save_plain applies burrow_refused to every event of a group at
//     once, then numbers the kind 445s per group and writes the event and
//     tag rows in the same statement.
//
// A plain event (saveArgs.plain) replaces, deletes and vanishes nothing and
// is no KeyPackage and no gift wrap: what storage.Store asks of it is
// burrow_refused's checks, a seq when it is a kind 445 with one "h", and its
// rows. Events of one group cannot change each other's checks then, so they
// may be checked together against the state before the group.
const migrationPlainGroups = `
CREATE FUNCTION burrow_refused(
	p_id bytea, p_id_hex bytea, p_pubkey bytea, p_created_at bigint, p_kind integer,
	p_addr bytea, p_recipients bytea[], p_kp boolean, p_kp_ref bytea)
RETURNS TABLE (is_stored boolean, stored_seq bigint, is_banned boolean, is_blocked boolean)
LANGUAGE sql STABLE AS $fn$
	-- OFFSET 0 keeps every EXISTS a probe per event. Without it, PostgreSQL
	-- may run one in burrow_save_plain as a hash of the whole table, a
	-- choice made while the table was small and kept in the cached plan as
	-- it grows (1.5 ms per event at 20,000 events).
	SELECT EXISTS (SELECT 1 FROM events e WHERE e.id = p_id OFFSET 0)
	       OR (p_kind IN (443, 30443) AND EXISTS (SELECT 1 FROM keypackages k WHERE k.id = p_id OFFSET 0)),
	       (SELECT e.seq FROM events e WHERE e.id = p_id),
	       EXISTS (SELECT 1 FROM banned_pubkeys b WHERE b.pubkey = p_pubkey OFFSET 0),
	       EXISTS (SELECT 1 FROM tombstones t WHERE t.id = p_id OFFSET 0)
	       -- NIP-09: a stored kind 5 naming this event from its author,
	       -- or from a recipient of a gift wrap (one naming a kind 5 or
	       -- a request to vanish has no effect).
	       OR (p_kind NOT IN (5, 62) AND EXISTS (
	           SELECT 1 FROM event_tags t JOIN events d ON d.id = t.event_id
	            WHERE t.name = 'e' AND t.value = p_id_hex AND t.kind = 5
	              AND (d.pubkey = p_pubkey OR (p_kind = 1059 AND d.pubkey = ANY(p_recipients))) OFFSET 0))
	       OR (p_addr IS NOT NULL AND EXISTS (
	           SELECT 1 FROM event_tags t JOIN events d ON d.id = t.event_id
	            WHERE t.name = 'a' AND t.value = p_addr AND t.kind = 5
	              AND t.created_at >= p_created_at AND d.pubkey = p_pubkey OFFSET 0))
	       -- NIP-62: the author, or a gift wrap's recipient, vanished at
	       -- or after this event's created_at.
	       OR EXISTS (SELECT 1 FROM vanished v
	            WHERE v.until >= p_created_at
	              AND (v.pubkey = p_pubkey OR (p_kind = 1059 AND v.pubkey = ANY(p_recipients))) OFFSET 0)
	       -- A KeyPackage that died (burrow_save's upsert closes the race).
	       OR (p_kp AND EXISTS (SELECT 1 FROM keypackage_refs r
	            WHERE r.ref = p_kp_ref AND r.deleted_at IS NOT NULL OFFSET 0))
$fn$;

` + burrowSaveV9Head + `		SELECT r.is_stored, r.stored_seq, r.is_banned, r.is_blocked
		  FROM burrow_refused(p_id, p_id_hex, p_pubkey, p_created_at, p_kind, p_addr, p_recipients, p_kp, p_kp_ref) r
` + burrowSaveV9Tail + `
-- burrow_save_plain saves plain events (see above) in the caller's
-- transaction, given as parallel arrays, each id once, with their tag rows
-- (p_tag_events: 1-based index of the row's event) and their shared lock
-- keys in sorted order. Status and seq per event, in order; statuses as
-- burrow_save's (0 stored, 1 duplicate, 2 deleted, 5 banned). An event
-- another transaction stored after the checks fails the statement
-- (unique_violation) rather than leave a gap in its group's numbers; the
-- caller then saves each event on its own with burrow_save.
CREATE FUNCTION burrow_save_plain(
	p_ids bytea[], p_id_hexes bytea[], p_pubkeys bytea[], p_created_ats bigint[], p_kinds integer[],
	p_tags bytea[], p_contents bytea[], p_sigs bytea[], p_expires_ats bigint[], p_hs bytea[],
	p_tag_events integer[], p_tag_names text[], p_tag_values bytea[], p_lock_keys integer[],
	OUT o_status integer[], OUT o_seq bigint[])
LANGUAGE plpgsql AS $fn$
BEGIN
	PERFORM pg_advisory_xact_lock_shared(1114993153, k) FROM unnest(p_lock_keys) AS k;
	-- Group counters are taken in h order, as burrow_save's callers take
	-- them, and each once for all its events.
	WITH i AS (SELECT * FROM unnest(p_ids, p_id_hexes, p_pubkeys, p_created_ats, p_kinds,
	                                p_tags, p_contents, p_sigs, p_expires_ats, p_hs)
	             WITH ORDINALITY AS i(id, id_hex, pubkey, created_at, kind, tags, content, sig, expires_at, h, n)),
	     c AS (SELECT i.*, r.* FROM i
	             CROSS JOIN LATERAL burrow_refused(i.id, i.id_hex, i.pubkey, i.created_at, i.kind, NULL, NULL, false, NULL) r),
	     ok AS (SELECT c.*, count(*) OVER (PARTITION BY c.h) AS h_n,
	                   row_number() OVER (PARTITION BY c.h ORDER BY c.n) AS h_rank
	              FROM c WHERE NOT (c.is_stored OR c.is_banned OR c.is_blocked)),
	     s AS (INSERT INTO group_seqs AS g (h, last_seq)
	           SELECT ok.h, count(*) FROM ok WHERE ok.h IS NOT NULL GROUP BY ok.h ORDER BY ok.h
	           ON CONFLICT (h) DO UPDATE SET last_seq = g.last_seq + excluded.last_seq
	           RETURNING g.h, g.last_seq),
	     e AS (INSERT INTO events (id, pubkey, created_at, kind, tags, content, sig, expires_at, h, seq)
	           SELECT ok.id, ok.pubkey, ok.created_at, ok.kind, ok.tags, ok.content, ok.sig, ok.expires_at, ok.h,
	                  s.last_seq - ok.h_n + ok.h_rank
	             FROM ok LEFT JOIN s ON s.h = ok.h
	           RETURNING id, seq),
	     t AS (INSERT INTO event_tags (event_id, name, value, kind, created_at)
	           SELECT ok.id, x.name, x.value, ok.kind, ok.created_at
	             FROM unnest(p_tag_events, p_tag_names, p_tag_values) AS x(n, name, value)
	             JOIN ok ON ok.n = x.n)
	SELECT array_agg(CASE WHEN c.is_stored THEN 1 WHEN c.is_banned THEN 5 WHEN c.is_blocked THEN 2 ELSE 0 END ORDER BY c.n),
	       array_agg(coalesce(e.seq, c.stored_seq, 0) ORDER BY c.n)
	  INTO o_status, o_seq
	  FROM c LEFT JOIN e ON e.id = c.id;
END
$fn$;

-- As burrow_save's: generic plans, and indexes even on a new relay's small tables.
ALTER FUNCTION burrow_save_plain SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION burrow_save_plain SET enable_seqscan = off;
`
