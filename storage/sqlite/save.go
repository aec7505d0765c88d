package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// row is an event prepared for insertion, computed before it is queued so
// the writer does only database work.
type row struct {
	ev         *nostr.Event
	tags       string         // JSON
	replaceKey sql.NullString // slot of a replaceable/addressable event
	expiresAt  sql.NullInt64  // effective expiry (see migration 3)
	group      string         // "h" of a kind 445 with exactly one h, else ""
	kpRef      sql.NullString // KeyPackageRef, only from SaveKeyPackage
	// kp holds the KeyPackage rules of a SaveKeyPackage call, nil for Save.
	kp *storage.KeyPackage
}

func prepareRow(ev *nostr.Event, now time.Time) (row, error) {
	tags, err := json.Marshal(ev.Tags)
	if err != nil {
		return row{}, fmt.Errorf("sqlite: encode tags: %w", err)
	}
	r := row{ev: ev, tags: string(tags)}
	if key, ok := slotKey(ev.Kind, ev.PubKey, ev.Tags.GetD()); ok {
		r.replaceKey = sql.NullString{String: key, Valid: true}
	}
	if exp, ok := expiration(ev.Tags); ok {
		if exp <= now.Unix() {
			return row{}, fmt.Errorf("sqlite: expiration %d is not after now: %w", exp, storage.ErrExpired)
		}
		r.expiresAt = sql.NullInt64{Int64: exp, Valid: true}
	}
	if ev.Kind == 445 {
		var hs []string
		for _, t := range ev.Tags {
			if len(t) >= 2 && t[0] == "h" {
				hs = append(hs, t[1])
			}
		}
		if len(hs) == 1 {
			r.group = hs[0]
		}
	}
	return r, nil
}

// slotKey is the replace_key of an event: "kind:pubkey:" for replaceable
// kinds, "kind:pubkey:d" (first d value, "" if none) for addressable ones. It
// equals the event's NIP-09 "a" address.
func slotKey(kind int, pubkey, d string) (string, bool) {
	switch {
	case nostr.IsReplaceableKind(kind):
		return strconv.Itoa(kind) + ":" + pubkey + ":", true
	case nostr.IsAddressableKind(kind):
		return strconv.Itoa(kind) + ":" + pubkey + ":" + d, true
	}
	return "", false
}

// expiration returns the NIP-40 expiration of the first "expiration" tag. A
// value that is not an integer is ignored (the event does not expire).
func expiration(tags nostr.Tags) (int64, bool) {
	for _, t := range tags {
		if len(t) >= 2 && t[0] == "expiration" {
			v, err := strconv.ParseInt(strings.TrimSpace(t[1]), 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// Save stores ev with every rule of storage.Store.Save checked inside the
// writer's transaction.
func (s *Store) Save(ctx context.Context, ev *nostr.Event) (storage.Result, error) {
	if nostr.IsEphemeralKind(ev.Kind) {
		return storage.Result{}, fmt.Errorf("sqlite: ephemeral kind %d cannot be stored", ev.Kind)
	}
	r, err := prepareRow(ev, time.Now())
	if err != nil {
		return storage.Result{}, err
	}
	if s.noSeq {
		r.group = ""
	}
	if ev.Kind != 62 {
		return s.saveRow(ctx, r)
	}
	// A request to vanish removes the author's events in chunks first,
	// then is stored (removing what arrived meanwhile) whatever ctx does
	// from there: a removal begun is finished.
	pre, err := s.vanishBefore(ctx, ev)
	if err != nil {
		return storage.Result{Deleted: pre}, err
	}
	res, err := s.saveRow(context.WithoutCancel(ctx), r)
	res.Deleted = append(pre, res.Deleted...)
	return res, err
}

// saveRow queues the save of a prepared row and waits for its commit.
func (s *Store) saveRow(ctx context.Context, r row) (storage.Result, error) {
	var res storage.Result
	err := s.write(ctx, func(tx *txn) error {
		res = storage.Result{} // the writer may run an op twice
		return tx.save(r, &res)
	})
	if err != nil {
		if isRefusal(err) {
			// res is complete: the writer answered before this read.
			return storage.Result{Seq: res.Seq}, err
		}
		return storage.Result{}, err
	}
	return res, nil
}

// stored is the part of an event row that deletion needs.
type stored struct {
	n         int64
	id        string
	kind      int
	pubkey    string
	createdAt int64
	tags      string         // JSON, to find its tag rows
	kpRef     sql.NullString // KeyPackageRef of a KeyPackage saved with its rules
}

func scanStored(sc interface{ Scan(...any) error }) (stored, error) {
	var e stored
	err := sc.Scan(&e.n, &e.id, &e.kind, &e.pubkey, &e.createdAt, &e.tags, &e.kpRef)
	return e, err
}

// collect reads every row stmt yields (columns as scanStored expects). The
// rows are read to the end before the caller removes any of them.
func (tx *txn) collect(stmt *rawStmt, args ...any) ([]stored, error) {
	rows, err := stmt.QueryContext(tx.ctx, args...)
	if err != nil {
		return nil, err
	}
	var found []stored
	for rows.Next() {
		e, err := scanStored(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		found = append(found, e)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	return found, rows.Err()
}

func (tx *txn) save(r row, res *storage.Result) error {
	ev := r.ev
	var (
		dupSeq                              sql.NullInt64
		tombstoned, block, banned, vanished bool
	)
	if err := tx.st.check.QueryRowContext(tx.ctx, ev.ID, ev.PubKey, r.replaceKey, ev.CreatedAt, ev.Kind != 5).
		Scan(&dupSeq, &tombstoned, &block, &banned, &vanished); err != nil {
		return fmt.Errorf("sqlite: check %s: %w", ev.ID, err)
	}
	switch {
	case dupSeq.Valid:
		res.Seq = dupSeq.Int64
		return fmt.Errorf("sqlite: %s: %w", ev.ID, storage.ErrDuplicate)
	case banned:
		return fmt.Errorf("sqlite: %s: %w", ev.ID, storage.ErrBanned)
	case tombstoned:
		if ev.Kind == 445 {
			// A Commit that lost a slot is tombstoned; say who holds it.
			if err := tx.lostSlot(ev.ID); err != nil {
				return err
			}
		}
		return fmt.Errorf("sqlite: %s is tombstoned: %w", ev.ID, storage.ErrDeleted)
	case block:
		return fmt.Errorf("sqlite: %s is named by a deletion request: %w", ev.ID, storage.ErrDeleted)
	case vanished:
		return fmt.Errorf("sqlite: %s predates its author's request to vanish: %w", ev.ID, storage.ErrDeleted)
	}
	if r.kpRef.Valid {
		var (
			dead     bool
			twinsEnd sql.NullInt64
		)
		if err := tx.st.refDeleted.QueryRowContext(tx.ctx, r.kpRef.String, ev.PubKey).Scan(&dead, &twinsEnd); err != nil {
			return fmt.Errorf("sqlite: check KeyPackageRef of %s: %w", ev.ID, err)
		}
		if dead {
			return fmt.Errorf("sqlite: %s carries a deleted KeyPackage: %w", ev.ID, storage.ErrDeleted)
		}
		// Twins expire together, at the earliest expiry among them.
		if twinsEnd.Valid && (!r.expiresAt.Valid || twinsEnd.Int64 < r.expiresAt.Int64) {
			if twinsEnd.Int64 <= time.Now().Unix() {
				return fmt.Errorf("sqlite: %s carries a KeyPackage whose twin expired at %d: %w", ev.ID, twinsEnd.Int64, storage.ErrExpired)
			}
			r.expiresAt = twinsEnd
		}
	}

	// Every refusal decided by reads comes before the first write, so a
	// refused op leaves nothing to undo (see writer.go).
	var replaced *stored
	if r.replaceKey.Valid {
		old, err := scanStored(tx.st.bySlot.QueryRowContext(tx.ctx, r.replaceKey.String))
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("sqlite: read slot: %w", err)
		case old.createdAt > int64(ev.CreatedAt) || (old.createdAt == int64(ev.CreatedAt) && old.id < ev.ID):
			return fmt.Errorf("sqlite: %s is older than stored %s: %w", ev.ID, old.id, storage.ErrReplaced)
		default:
			replaced = &old
		}
	}
	var evict []stored
	if r.kp != nil && r.kp.SlotCap > 0 && replaced == nil {
		var err error
		if evict, err = tx.evictions(r, time.Now()); err != nil {
			return err
		}
	}

	if replaced != nil {
		if err := tx.remove(*replaced, storage.ReasonReplaced, &res.Deleted); err != nil {
			return err
		}
	}
	for _, e := range evict {
		if err := tx.remove(e, storage.ReasonEvicted, &res.Deleted); err != nil {
			return err
		}
	}

	switch ev.Kind {
	case 5:
		if err := tx.deleteTargets(ev, &res.Deleted); err != nil {
			return err
		}
	case 62:
		if err := tx.vanish(ev, &res.Deleted); err != nil {
			return err
		}
	}

	// The KeyPackages this save removed die with their twins, except the
	// one it carries itself.
	if err := tx.buryTwins(r.kpRef, nil, &res.Deleted); err != nil {
		return err
	}

	if r.group != "" {
		if err := tx.queryRowWrite(tx.st.nextSeq, r.group).Scan(&res.Seq); err != nil {
			return fmt.Errorf("sqlite: next seq: %w", err)
		}
	}
	result, err := tx.exec(tx.st.insertEvent, ev.ID, ev.PubKey, int64(ev.CreatedAt), ev.Kind, r.tags,
		ev.Content, ev.Sig, r.replaceKey, r.expiresAt, res.Seq, r.kpRef)
	if err != nil {
		return fmt.Errorf("sqlite: insert %s: %w", ev.ID, err)
	}
	if r.kpRef.Valid && r.expiresAt.Valid {
		if _, err := tx.exec(tx.st.twinsExpire, r.expiresAt, ev.PubKey, r.kpRef.String); err != nil {
			return fmt.Errorf("sqlite: expire twins of %s: %w", ev.ID, err)
		}
	}
	n, err := result.LastInsertId()
	if err != nil {
		return fmt.Errorf("sqlite: insert %s: %w", ev.ID, err)
	}
	return tx.insertTags(n, ev.Tags)
}

// insertTags adds the (name, value) rows of tags for event row n: only
// tags whose name is a single letter, the only ones a filter can address
// (storage.Indexable), so an event's other tags cost no index rows.
func (tx *txn) insertTags(n int64, tags nostr.Tags) error {
	args := make([]any, 0, 3*min(len(tags), tagRowsPerInsert))
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		_, err := tx.exec(tx.st.insertTags[len(args)/3-1], args...)
		args = args[:0]
		if err != nil {
			return fmt.Errorf("sqlite: insert tags: %w", err)
		}
		return nil
	}
	for _, t := range tags {
		if len(t) < 2 || !storage.IndexedTagName(t[0]) {
			continue
		}
		args = append(args, t[0], t[1], n)
		if len(args) == 3*tagRowsPerInsert {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// deleteTargets applies kind 5 req: it deletes the events it names by "e" and
// the versions up to its created_at of the addresses it names by "a", when
// they belong to req's author (or are gift wraps addressed to it) and are not
// kind 5 themselves. If every named event the store holds is under someone
// else's authority it fails with storage.ErrNotAuthor.
func (tx *txn) deleteTargets(req *nostr.Event, deleted *[]storage.Deletion) error {
	var own, foreign int
	seen := map[string]bool{}
	for _, t := range req.Tags {
		if len(t) < 2 || (t[0] != "e" && t[0] != "a") || seen[t[0]+t[1]] {
			continue
		}
		seen[t[0]+t[1]] = true
		var (
			target stored
			err    error
		)
		if t[0] == "e" {
			target, err = scanStored(tx.st.byID.QueryRowContext(tx.ctx, t[1]))
		} else {
			key, ok := parseAddress(t[1])
			if !ok {
				continue
			}
			target, err = scanStored(tx.st.bySlot.QueryRowContext(tx.ctx, key))
		}
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sqlite: read deletion target: %w", err)
		}
		if target.pubkey != req.PubKey && !giftWrapFor(target, req.PubKey) {
			foreign++
			continue
		}
		own++
		if target.kind == 5 || (t[0] == "a" && target.createdAt > int64(req.CreatedAt)) {
			continue
		}
		if err := tx.remove(target, storage.ReasonDeletionRequest, deleted); err != nil {
			return err
		}
	}
	if foreign > 0 && own == 0 {
		return fmt.Errorf("sqlite: kind 5 %s: %w", req.ID, storage.ErrNotAuthor)
	}
	return nil
}

// giftWrapFor reports whether e is a kind 1059 gift wrap whose "p" tag names
// pubkey: NIP-59 lets the recipient delete it.
func giftWrapFor(e stored, pubkey string) bool {
	if e.kind != 1059 {
		return false
	}
	var tags nostr.Tags
	if err := json.Unmarshal([]byte(e.tags), &tags); err != nil {
		return false
	}
	for _, t := range tags {
		if len(t) >= 2 && t[0] == "p" && t[1] == pubkey {
			return true
		}
	}
	return false
}

// parseAddress turns a NIP-09 "a" value "kind:pubkey:d" into the slot key it
// names; only replaceable and addressable kinds have slots.
func parseAddress(a string) (string, bool) {
	parts := strings.SplitN(a, ":", 3)
	if len(parts) < 2 {
		return "", false
	}
	kind, err := strconv.Atoi(parts[0])
	if err != nil {
		return "", false
	}
	d := ""
	if len(parts) == 3 {
		d = parts[2]
	}
	return slotKey(kind, parts[1], d)
}

// remove deletes a stored event with its tag rows and tombstones its id.
func (tx *txn) remove(e stored, reason storage.Reason, deleted *[]storage.Deletion) error {
	var tags nostr.Tags
	if err := json.Unmarshal([]byte(e.tags), &tags); err != nil {
		return fmt.Errorf("sqlite: decode tags of %s: %w", e.id, err)
	}
	for _, t := range tags {
		if len(t) < 2 || !storage.IndexedTagName(t[0]) {
			continue
		}
		if _, err := tx.exec(tx.st.deleteTag, t[0], t[1], e.n); err != nil {
			return fmt.Errorf("sqlite: delete tags of %s: %w", e.id, err)
		}
	}
	if _, err := tx.exec(tx.st.deleteEvent, e.n); err != nil {
		return fmt.Errorf("sqlite: delete %s: %w", e.id, err)
	}
	if err := tx.tombstone(e.id, reason); err != nil {
		return err
	}
	if scrubsOnDelete(e.kind) {
		tx.scrub = true
	}
	if e.kpRef.Valid {
		tx.killed = append(tx.killed, killedRef{pubkey: e.pubkey, ref: e.kpRef.String})
	}
	*deleted = append(*deleted, storage.Deletion{ID: e.id, Kind: e.kind, PubKey: e.pubkey, Reason: reason})
	return nil
}

// killedRef is a KeyPackage one of whose events the current op removed.
type killedRef struct{ pubkey, ref string }

// buryTwins finishes the deaths of the KeyPackages the current op removed
// events of (storage.KeyPackage's twin rule): their other events are
// removed and their refs tombstoned, except keep, the KeyPackage a save
// carries on. Every op that removes events calls it last. A twin goes with
// ReasonTwin unless own, when not nil, names the reason of a removal that
// targets it too and that this op happened not to reach yet (a ban or a
// request to vanish works in chunks, and a chunk may end between twins).
func (tx *txn) buryTwins(keep sql.NullString, own func(stored) storage.Reason, deleted *[]storage.Deletion) error {
	done := make(map[string]bool, len(tx.killed))
	// remove appends to tx.killed; the twins it adds share a ref already
	// being buried, so one pass over the refs known at the start suffices.
	killed := tx.killed
	tx.killed = nil
	for _, k := range killed {
		if done[k.ref] || (keep.Valid && k.ref == keep.String) {
			continue
		}
		done[k.ref] = true
		twins, err := tx.collect(tx.st.twins, k.pubkey, k.ref)
		if err != nil {
			return fmt.Errorf("sqlite: find twins: %w", err)
		}
		for _, e := range twins {
			reason := storage.ReasonTwin
			if own != nil {
				if r := own(e); r != "" {
					reason = r
				}
			}
			if err := tx.remove(e, reason, deleted); err != nil {
				return err
			}
		}
		if _, err := tx.exec(tx.st.buryRef, k.ref, time.Now().Unix()); err != nil {
			return fmt.Errorf("sqlite: tombstone KeyPackageRef: %w", err)
		}
	}
	tx.killed = nil
	return nil
}

// tombstone records that id may never be stored again; an existing tombstone
// keeps its first reason.
func (tx *txn) tombstone(id string, reason storage.Reason) error {
	if _, err := tx.exec(tx.st.tombstone, id, string(reason), time.Now().Unix()); err != nil {
		return fmt.Errorf("sqlite: tombstone %s: %w", id, err)
	}
	return nil
}

// Delete removes the stored events among ids and tombstones every id.
func (s *Store) Delete(ctx context.Context, ids []string, reason storage.Reason) ([]storage.Deletion, error) {
	if s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var deleted []storage.Deletion
	err := s.write(ctx, func(tx *txn) error {
		deleted = nil // the writer may run an op twice
		for _, id := range ids {
			e, err := scanStored(tx.st.byID.QueryRowContext(tx.ctx, id))
			switch {
			case errors.Is(err, sql.ErrNoRows):
				if err := tx.tombstone(id, reason); err != nil {
					return err
				}
			case err != nil:
				return fmt.Errorf("sqlite: read %s: %w", id, err)
			default:
				if err := tx.remove(e, reason, &deleted); err != nil {
					return err
				}
			}
		}
		return tx.buryTwins(sql.NullString{}, nil, &deleted)
	})
	if err != nil {
		return nil, err
	}
	return deleted, nil
}

// expiredChunk bounds how many expired events one write op removes, so a
// large backlog does not hold the writer for long.
const expiredChunk = 500

// DeleteExpired removes every event whose expiration is at or before now,
// in chunks, and tombstones their ids.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) ([]storage.Deletion, error) {
	if s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	return s.deleteInChunks(ctx, func(st *statements) *rawStmt { return st.expired }, now.Unix(), storage.ReasonExpired, "expired events")
}

// deleteInChunks removes and tombstones what find's statement (taking the
// cutoff and a chunk size) selects, one chunk per write op, so a large
// backlog does not hold the writer for long.
func (s *Store) deleteInChunks(ctx context.Context, find func(*statements) *rawStmt, cutoff int64, reason storage.Reason, what string) ([]storage.Deletion, error) {
	var all []storage.Deletion
	walMark := s.walWritten.Load()
	for {
		var chunk []storage.Deletion
		err := s.write(ctx, func(tx *txn) error {
			chunk = nil // the writer may run an op twice
			found, err := tx.collect(find(tx.st), cutoff, expiredChunk)
			if err != nil {
				return fmt.Errorf("sqlite: find %s: %w", what, err)
			}
			for _, e := range found {
				if err := tx.remove(e, reason, &chunk); err != nil {
					return err
				}
			}
			return tx.buryTwins(sql.NullString{}, nil, &chunk)
		})
		if err != nil {
			return all, err
		}
		all = append(all, chunk...)
		if len(chunk) < expiredChunk {
			return all, nil
		}
		s.catchUpWAL(ctx, &walMark)
	}
}
