package server

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// The EVENT pipeline: verify (parallel) → admission rules (the configured
// ones, then NIP-62's relay check) → store, through the Hook that handles
// the kind (KeyPackages: validation and SaveKeyPackage; commit-slot claims:
// an envelope) or Store.Save → answer → broadcast (in arrival order per
// connection). Ingest (ingest.go)
// runs the same pipeline (runEvent) for an event that came without a
// connection.

// pendingEvent is an EVENT read from a connection, waiting in its FIFO.
type pendingEvent struct {
	ev       *nostr.Event
	size     int           // bytes counted against the connection's read-ahead
	verified chan struct{} // closed when reason is set
	reason   string        // "" when the id and signature are good
	// inline: the committer verifies the event itself (it was idle with
	// nothing queued); verified is nil then.
	inline bool
}

// enqueueEvent starts verification and queues the event for in-order
// commit. Verification holds a slot of the shared pool (verifySem) and runs
// on a goroutine of its own, or, when the committer is idle with nothing
// queued, on the committer, which would otherwise only wait for it: the
// reader goes on reading either way, and the goroutine start and a wake-up
// are saved. It blocks when the pool, the FIFO or the read-ahead bytes are
// full, which only slows this connection's reading.
func (c *conn) enqueueEvent(ev *nostr.Event, size int) {
	p := &pendingEvent{ev: ev, size: size}
	if !c.readAhead.take(size) {
		return
	}
	select {
	case c.srv.verifySem <- struct{}{}:
	case <-c.dead:
		c.readAhead.give(size)
		return
	}
	// Only this goroutine sends on c.pending, so an idle committer with an
	// empty FIFO takes p next.
	if c.committerIdle.Load() && len(c.pending) == 0 {
		p.inline = true
	} else {
		p.verified = make(chan struct{})
		go func() {
			defer func() { <-c.srv.verifySem }()
			p.reason = verifyEvent(ev)
			close(p.verified)
		}()
	}
	select {
	case c.pending <- p:
	case <-c.dead:
		if p.inline {
			<-c.srv.verifySem
		} else {
			<-p.verified
		}
		c.readAhead.give(size)
	}
}

// commitLoop takes EVENTs in arrival order and runs the rest of the
// pipeline for each.
func (c *conn) commitLoop() {
	defer close(c.committerDone)
	for {
		c.committerIdle.Store(true)
		p, ok := <-c.pending
		c.committerIdle.Store(false)
		if !ok {
			return
		}
		if p.inline {
			p.reason = verifyEvent(p.ev)
			<-c.srv.verifySem
		} else {
			<-p.verified
		}
		c.srv.processEvent(c, p)
		c.readAhead.give(p.size)
	}
}

// verifyEvent checks ev's id and signature; it returns the refusal, or ""
// when both are good.
func verifyEvent(ev *nostr.Event) string {
	if !ev.CheckID() {
		return "invalid: event id does not match its content"
	}
	if ok, _ := ev.CheckSignature(); !ok {
		return "invalid: bad signature"
	}
	return ""
}

// processEvent runs the pipeline for an EVENT read from c and answers it
// with OK.
func (s *Server) processEvent(c *conn, p *pendingEvent) {
	s.runEvent(c.eventContext(), p.ev, p.reason, s.rules, func(ok bool, msg string) {
		c.send(s.hardCtx, encodeOK(p.ev.ID, ok, msg))
	})
}

// runEvent is the EVENT pipeline after the id and signature check (reason
// is its refusal, or ""): the admission rules, NIP-62's relay check, the
// kind's SaveHook or Store.Save (with the store's tombstones, replacement,
// deletion and sequencing rules), the deletions' side effects, then the OK,
// given to reply exactly once, and the broadcast to live subscribers after
// it. The websocket path (processEvent) and Ingest share it; ctx carries
// the publisher's connection (policy.WithConn) for the rules.
func (s *Server) runEvent(ctx context.Context, ev *nostr.Event, reason string, rules []policy.Rule, reply func(ok bool, msg string)) {
	answer := func(ok bool, msg string) {
		if ok {
			s.metrics.accepted(ev.Kind)
		} else {
			s.metrics.rejected(ev.Kind, msg)
		}
		reply(ok, msg)
	}
	if reason != "" {
		answer(false, reason)
		return
	}
	if ev.Kind == nostr.KindClientAuthentication {
		answer(false, "invalid: AUTH events belong in an AUTH message")
		return
	}
	if reject, msg := policy.Check(ctx, ev, rules); reject {
		answer(false, withPrefix(msg, "blocked"))
		return
	}
	if msg := checkVanish(ev, s.cfg.ServiceURL); msg != "" {
		answer(false, msg)
		return
	}

	hook := s.saveHook(ev)
	if hook == nil && nostr.IsEphemeralKind(ev.Kind) {
		// Ephemeral events are relayed, never stored.
		answer(true, "")
		s.broadcaster.Broadcast(Delivery{Event: ev})
		return
	}

	ticket := s.tracker.begin()
	defer s.tracker.end(ticket)
	st, err := s.save(ctx, hook, ev)
	if err != nil {
		ok, msg := s.storeErrorAnswer(ev, st.res, err)
		if errors.Is(err, storage.ErrDuplicate) {
			// Answered OK, but nothing new was accepted.
			s.metrics.rejected(ev.Kind, "duplicate:")
			reply(ok, msg)
			return
		}
		answer(ok, msg)
		return
	}
	committed := s.tracker.committed()
	// Deletions are known before anything is answered or broadcast, so no
	// copy of a deleted event still on its way is written after the OK.
	s.removed(st.res.Deleted)
	msg := st.okMessage
	if msg == "" && st.res.Seq > 0 {
		msg = seqMessage(st.res.Seq)
	}
	answer(true, msg)
	if st.broadcast != nil {
		s.broadcaster.Broadcast(Delivery{Event: st.broadcast, Seq: st.res.Seq, Ticket: ticket, Committed: committed, Releases: st.releases})
	}
}

// seqMessage is the OK message of a sequenced group event.
func seqMessage(seq int64) string { return "seq:" + strconv.FormatInt(seq, 10) }

// storeErrorAnswer maps a Save (or SaveHook) error to the OK answer.
func (s *Server) storeErrorAnswer(ev *nostr.Event, res storage.Result, err error) (bool, string) {
	if r, ok := errors.AsType[Refusal](err); ok {
		return false, r.OKMessage()
	}
	switch {
	case errors.Is(err, storage.ErrDuplicate):
		if res.Seq > 0 {
			// A re-sent group event learns its seq again.
			return true, seqMessage(res.Seq)
		}
		return true, "duplicate: already have this event"
	case errors.Is(err, storage.ErrDeleted):
		return false, "blocked: deleted"
	case errors.Is(err, storage.ErrReplaced):
		return false, "blocked: a newer version of this event is stored"
	case errors.Is(err, storage.ErrExpired):
		return false, "invalid: event has expired"
	case errors.Is(err, storage.ErrNotAuthor):
		return false, "blocked: you may only delete your own events"
	case errors.Is(err, storage.ErrBanned):
		return false, "blocked: banned"
	case errors.Is(err, storage.ErrSlotCap):
		return false, "blocked: too many KeyPackage slots"
	case errors.Is(err, storage.ErrFull):
		s.log.Error("storage full", "id", ev.ID, "kind", ev.Kind, "err", err)
		return false, "error: the relay's storage is full, try again later"
	case errors.Is(err, storage.ErrBusy):
		// Nothing was written; the store bounded its wait for a lock.
		s.log.Warn("store busy", "id", ev.ID, "kind", ev.Kind, "err", err)
		return false, "error: the relay is busy with this group or author, try again"
	}
	if taken, ok := errors.AsType[*storage.SlotTakenError](err); ok {
		return false, "blocked: slot taken by " + taken.Holder
	}
	if lost, ok := errors.AsType[*storage.CommitLostError](err); ok {
		return false, "blocked: commit lost slot " + lost.Slot + " to " + lost.Holder
	}
	if holds, ok := errors.AsType[*storage.CommitHoldsError](err); ok {
		return false, "blocked: commit holds slot " + holds.Slot
	}
	s.log.Error("storing event", "id", ev.ID, "kind", ev.Kind, "err", err)
	return false, "error: could not store the event, try again later"
}

// withPrefix makes sure a refusal starts with a NIP-01 machine prefix, so
// rules written for khatru that return bare text still answer correctly.
func withPrefix(msg, prefix string) string {
	return nostr.NormalizeOKMessage(msg, prefix)
}

// Delivery is one event on its way to live subscribers.
type Delivery struct {
	Event *nostr.Event
	// Seq is the group sequence number of a stored kind 445 (0 otherwise).
	Seq int64
	// Ticket is the local commit ticket (see commitTracker); 0 for events
	// that were not committed by this process (ephemeral, or from another
	// instance), which are always checked against stored results already
	// sent to a subscription.
	Ticket uint64
	// Committed is the commit's place in completion order (commitTracker),
	// set with Ticket: a subscription whose stored query began after it
	// does not get the event live.
	Committed uint64
	// Releases, for the replacement Commit of a commit-slot release, names
	// the Commit it released; ordered readers get it in the EVENT's
	// metadata (docs/commit-slots.md, section 5.1).
	Releases *storage.Release
}

// Broadcaster hands events to live subscribers. Broadcast must never block
// on a subscriber: the registry queues without waiting and disconnects
// readers that fall behind. An ordering layer or a cross-instance bus wraps
// the local Broadcaster (Config.BroadcastVia).
type Broadcaster interface {
	Broadcast(d Delivery)
}

// ensure the local fan-out satisfies the interface.
var _ Broadcaster = (*registry)(nil)

// contextFor is the context rules and storage see for c's events.
func contextFor(ctx context.Context, c *conn) context.Context {
	return policy.WithConn(ctx, policy.Conn{IP: c.ip, Group: c.group, AuthedPubKey: c.authedPubKey()})
}

// eventContext is contextFor(hardCtx, c) for the committer, kept while the
// connection's authenticated pubkey stays the same, so an event costs no
// new context.
func (c *conn) eventContext() context.Context {
	pk := c.authedPubKey()
	if c.evCtx == nil || c.evCtxAuthed != pk {
		c.evCtx = policy.WithConn(c.srv.hardCtx, policy.Conn{IP: c.ip, Group: c.group, AuthedPubKey: pk})
		c.evCtxAuthed = pk
	}
	return c.evCtx
}

// removed records events that left storage: metrics, the deleted set that
// stops copies still on their way to subscribers, and the other instances
// (Config.PublishDeletions).
func (s *Server) removed(ds []storage.Deletion) {
	if len(ds) == 0 {
		return
	}
	s.metrics.removed(ds)
	s.deleted.addDeletions(ds, time.Now())
	if s.cfg.PublishDeletions != nil {
		ids := make([]string, len(ds))
		for i, d := range ds {
			ids[i] = d.ID
		}
		s.cfg.PublishDeletions(ids)
	}
}

// RemoteDeletions records events another instance deleted, so copies of
// them still on their way to this instance's subscribers are dropped.
func (s *Server) RemoteDeletions(ids []string) {
	s.deleted.add(ids, time.Now())
}
