package postgres

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/groupcommit"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nbd-wtf/go-nostr"
)

const saveSQL = `SELECT o_status, o_seq, o_del_ids, o_del_kinds, o_del_pubkeys, o_del_reasons
FROM burrow_save($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
	$21, $22, $23, $24, $25, $26)`

// burrow_save status codes.
const (
	statusStored = iota
	statusDuplicate
	statusDeleted
	statusReplaced
	statusNotAuthor
	statusBanned
	statusSlotCap
	// 7 to 10 are burrow_claim_slot's (grouplog.go).
	statusExpired = 11 // a KeyPackage whose twin has expired
)

type saveReq struct {
	ctx   context.Context
	id    string
	args  *saveArgs
	claim *claimCall    // set for a commit-slot claim: burrow_claim_slot instead of burrow_save
	resp  chan saveResp // buffered: the writer never waits for the caller

	res saveResp // filled during a batch, sent after COMMIT
}

type saveResp struct {
	status int
	res    storage.Result
	err    error
}

// Save stores ev; see storage.Store.
func (s *Store) Save(ctx context.Context, ev *nostr.Event) (storage.Result, error) {
	return s.save(ctx, ev, nil)
}

// SaveKeyPackage stores a kind 443 or 30443 event with its KeyPackage
// rules; see storage.Store.
func (s *Store) SaveKeyPackage(ctx context.Context, ev *nostr.Event, kp storage.KeyPackage) (storage.Result, error) {
	return s.save(ctx, ev, &kp)
}

func (s *Store) save(ctx context.Context, ev *nostr.Event, kp *storage.KeyPackage) (storage.Result, error) {
	if s.isClosed() {
		return storage.Result{}, storage.ErrClosed
	}
	now := s.now()
	args, err := newSaveArgs(ev, kp, now)
	if err != nil {
		return storage.Result{}, fmt.Errorf("save: %w", err)
	}
	if args.expiresAt != nil && *args.expiresAt <= now.Unix() {
		return storage.Result{}, fmt.Errorf("save %s: expires at %d: %w", ev.ID, *args.expiresAt, storage.ErrExpired)
	}
	if s.noSeq {
		args.h = nil // stored as on a plain relay; still routed by group
	}
	if ev.Kind != 62 {
		return s.saveArgs(ctx, ev, args)
	}
	// A request to vanish deletes the author's events in chunks first,
	// then is stored (deleting what arrived meanwhile) whatever ctx does
	// from there: a deletion begun is finished.
	pre, err := s.vanishBefore(ctx, ev)
	if err != nil {
		return storage.Result{Deleted: pre}, fmt.Errorf("save %s: %w", ev.ID, err)
	}
	res, err := s.saveArgs(context.WithoutCancel(ctx), ev, args)
	res.Deleted = append(pre, res.Deleted...)
	return res, err
}

// saveArgs queues one save with the writers and waits for its outcome.
func (s *Store) saveArgs(ctx context.Context, ev *nostr.Event, args *saveArgs) (storage.Result, error) {
	r := s.queue(ctx, &saveReq{ctx: ctx, id: ev.ID, args: args})
	if r.err != nil {
		return r.res, fmt.Errorf("save %s: %w", ev.ID, busy(r.err))
	}
	if r.status == statusStored {
		s.keyPackagesDeleted(r.res.Deleted)
		return r.res, nil
	}
	return r.res, s.statusErr(ctx, ev, args.id, r.status)
}

// queue hands req to the writer of its route and waits for its outcome.
// Once queued, req is waited for whatever ctx does: the writer skips it if
// ctx ended before its group started, and otherwise its outcome is the one
// reported (waits are bounded inside PostgreSQL).
func (s *Store) queue(ctx context.Context, req *saveReq) saveResp {
	req.resp = make(chan saveResp, 1)
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return saveResp{err: storage.ErrClosed}
	}
	select {
	case s.queues[req.args.route%uint32(len(s.queues))] <- req:
	case <-ctx.Done():
		s.mu.RUnlock()
		return saveResp{err: ctx.Err()}
	}
	s.mu.RUnlock()
	return <-req.resp
}

// statusErr is the error of a burrow_save status other than statusStored.
// A kind 445 refused as deleted may be a Commit that lost a commit slot
// (its id is tombstoned then): only on that path is the slot looked up, so
// that the refusal names the slot's current holder.
func (s *Store) statusErr(ctx context.Context, ev *nostr.Event, id []byte, status int) error {
	switch status {
	case statusDuplicate:
		return fmt.Errorf("save %s: %w", ev.ID, storage.ErrDuplicate)
	case statusDeleted:
		if ev.Kind == 445 {
			var holder []byte
			err := s.pool.QueryRow(ctx, loserHolderSQL, id).Scan(&holder)
			switch {
			case err == nil:
				return fmt.Errorf("save %s: %w", ev.ID, &storage.SlotTakenError{Holder: hex.EncodeToString(holder)})
			case !errors.Is(err, pgx.ErrNoRows):
				return fmt.Errorf("save %s: read its commit slot: %w", ev.ID, err)
			}
		}
		return fmt.Errorf("save %s: %w", ev.ID, storage.ErrDeleted)
	case statusReplaced:
		return fmt.Errorf("save %s: %w", ev.ID, storage.ErrReplaced)
	case statusNotAuthor:
		return fmt.Errorf("save %s: %w", ev.ID, storage.ErrNotAuthor)
	case statusBanned:
		return fmt.Errorf("save %s: %w", ev.ID, storage.ErrBanned)
	case statusSlotCap:
		return fmt.Errorf("save %s: %w", ev.ID, storage.ErrSlotCap)
	case statusExpired:
		return fmt.Errorf("save %s: its KeyPackage's twin has expired: %w", ev.ID, storage.ErrExpired)
	}
	return fmt.Errorf("save %s: unknown status %d", ev.ID, status)
}

// loserHolderSQL: $1 the id of a Commit that lost a slot; the slot's
// current holder.
const loserHolderSQL = `SELECT s.holder FROM commit_slot_losers l
	JOIN commit_slots s ON s.h = l.h AND s.slot = l.slot WHERE l.id = $1`

// writer commits queued saves in groups until the queue is closed. While one
// group commits, the next accumulates, so the group size follows the load;
// a group smaller than recent ones waits up to maxLinger for the callers
// still on their way (groupcommit.Gatherer).
func (s *Store) writer(queue chan *saveReq) {
	g := groupcommit.New(queue, s.maxBatch, maxLinger)
	batch := make([]*saveReq, 0, s.maxBatch)
	for {
		var ok bool
		if batch, ok = g.Next(batch); !ok {
			return
		}
		s.commitGroup(batch)
		clear(batch)
	}
}

// maxLinger bounds how long a writer waits for a group to reach the size of
// recent ones. With the relay benchmark's 8 publishers, 4 ms took the
// server's CPU per event from 126-128 to 82 µs and events/s up 7-15 %
// (docs/benchmarks.md, "Session 9", "Second change").
const maxLinger = 4 * time.Millisecond

// commitGroup saves reqs in one transaction. If another instance stored
// one of them meanwhile, it runs the group again once, whole; if that or
// anything else fails (a deadlock with another instance, a lost
// connection, one event the database refuses), it saves each on its own
// so one bad event cannot fail the others.
func (s *Store) commitGroup(reqs []*saveReq) {
	live := reqs[:0:0]
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			r.resp <- saveResp{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// Instances sharing the database take the rows of a group in the same
	// order (group counters above all), so their groups rarely deadlock.
	// Order among different callers is free; one caller waits for each
	// save, so its own saves are never in one group together.
	slices.SortStableFunc(live, func(a, b *saveReq) int { return cmp.Compare(a.args.route, b.args.route) })
	err := s.commitTimed(live, true)
	if isUniqueViolation(err) {
		// Another instance stored one of the group's events after this
		// group's checks had read (a client that sent one event to two
		// instances at once). Run the group again whole: its checks now
		// see that event and refuse it as a duplicate, so the race costs
		// one more statement, not one transaction per event.
		err = s.commitTimed(live, true)
	}
	if err == nil {
		for _, r := range live {
			r.resp <- r.res
		}
		return
	}
	s.log.Warn("group commit failed; saving one by one", "events", len(live), "err", err)
	for _, r := range live {
		err := s.commitTimed([]*saveReq{r}, false)
		for try := 1; err != nil && retryable(err) && try < 5; try++ {
			time.Sleep(time.Duration(try) * 10 * time.Millisecond)
			err = s.commitTimed([]*saveReq{r}, false)
		}
		if err != nil {
			s.log.Warn("save failed", "id", r.id, "err", err)
			r.resp <- saveResp{err: err}
			continue
		}
		r.resp <- r.res
	}
}

// commitTimed runs runGroup and reports a commit to Config.OnCommit.
func (s *Store) commitTimed(reqs []*saveReq, together bool) error {
	start := time.Now()
	err := s.runGroup(reqs, together)
	if err == nil && s.onCommit != nil {
		s.onCommit(len(reqs), time.Since(start))
	}
	return err
}

// isUniqueViolation reports a unique index refusing a row: only the
// set-based save (burrow_save_plain) lets one through, when another
// instance inserted the same event after the statement's checks.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// retryable reports errors that a new transaction may not meet again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01": // serialization failure, deadlock detected
			return true
		}
		return false
	}
	return pgconn.SafeToRetry(err)
}

// runGroup saves reqs atomically in one round trip: the calls are sent as
// one pipeline ending in a single Sync, which PostgreSQL runs as one
// implicit transaction, committed at the Sync (or rolled back whole if any
// call fails). Results are kept in each request until the commit is known.
// With together, the plain saves among reqs go first, in one
// burrow_save_plain call; the others, and every save of a group saved one
// by one after a failure, are one burrow_save (or burrow_claim_slot) call
// each, which also weathers another instance storing the same event.
func (s *Store) runGroup(reqs []*saveReq, together bool) error {
	// Lock waits are bounded by the server (lock_timeout); this deadline
	// is only a backstop against a server that stopped answering, whose
	// transaction's fate is then unknown.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		b     pgx.Batch
		plain plainGroup
	)
	if together {
		reqs = plain.take(reqs)
	}
	if len(plain.reqs) > 0 {
		b.Queue(savePlainSQL, plain.values()...)
	}
	for _, r := range reqs {
		if r.claim != nil {
			b.Queue(claimSQL, r.claim.values...)
			continue
		}
		b.Queue(saveSQL, r.args.values()...)
	}
	br := s.pool.SendBatch(ctx, &b)
	if len(plain.reqs) > 0 {
		if err := plain.scan(br.QueryRow()); err != nil {
			_ = br.Close()
			return err
		}
	}
	for _, r := range reqs {
		var (
			resp saveResp
			err  error
		)
		if c := r.claim; c != nil {
			resp, err = scanSaveWith(br.QueryRow(), &c.holder, &c.released, &c.releasedSeq, &c.other)
		} else {
			resp, err = scanSave(br.QueryRow())
		}
		if err != nil {
			_ = br.Close()
			return err
		}
		r.res = resp
	}
	// Close reads up to ReadyForQuery, which follows the commit.
	return br.Close()
}

// scanSave reads the row of one saveSQL call.
func scanSave(row pgx.Row) (saveResp, error) {
	return scanSaveWith(row)
}

// scanSaveWith reads a row of status, seq, the extra columns into extra,
// then the four deletion arrays (burrow_save's, or burrow_claim_slot's).
func scanSaveWith(row pgx.Row, extra ...any) (saveResp, error) {
	var (
		resp    saveResp
		ids     [][]byte
		kinds   []int32
		pubkeys [][]byte
		reasons []string
	)
	dest := append([]any{&resp.status, &resp.res.Seq}, extra...)
	if err := row.Scan(append(dest, &ids, &kinds, &pubkeys, &reasons)...); err != nil {
		return saveResp{}, err
	}
	for i := range ids {
		resp.res.Deleted = append(resp.res.Deleted, storage.Deletion{
			ID:     hex.EncodeToString(ids[i]),
			Kind:   int(kinds[i]),
			PubKey: hex.EncodeToString(pubkeys[i]),
			Reason: storage.Reason(reasons[i]),
		})
	}
	return resp, nil
}
