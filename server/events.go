package server

import (
	"context"
	"errors"
	"strconv"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// The EVENT pipeline: verify (parallel) → admission rules (the configured
// ones, then NIP-62's relay check) → store, through the SaveHook that
// handles the kind (KeyPackages: validation and SaveKeyPackage) or
// Store.Save → answer → broadcast (in arrival order per connection). Later
// kind-specific rules (commit slots) join as SaveHooks.

// pendingEvent is an EVENT read from a connection, waiting in its FIFO.
type pendingEvent struct {
	ev       *nostr.Event
	verified chan struct{} // closed when reason is set
	reason   string        // "" when the id and signature are good
}

// enqueueEvent starts verification on the shared pool and queues the event
// for in-order commit. It blocks when the pool or the FIFO is full, which
// only slows this connection's reading.
func (c *conn) enqueueEvent(ev *nostr.Event) {
	p := &pendingEvent{ev: ev, verified: make(chan struct{})}
	select {
	case c.srv.verifySem <- struct{}{}:
	case <-c.dead:
		return
	}
	go func() {
		defer func() { <-c.srv.verifySem }()
		switch {
		case !ev.CheckID():
			p.reason = "invalid: event id does not match its content"
		default:
			if ok, _ := ev.CheckSignature(); !ok {
				p.reason = "invalid: bad signature"
			}
		}
		close(p.verified)
	}()
	select {
	case c.pending <- p:
	case <-c.dead:
	}
}

// commitLoop takes EVENTs in arrival order and runs the rest of the
// pipeline for each.
func (c *conn) commitLoop() {
	defer close(c.committerDone)
	for p := range c.pending {
		<-p.verified
		c.srv.processEvent(c, p)
	}
}

func (s *Server) processEvent(c *conn, p *pendingEvent) {
	ev := p.ev
	answer := func(ok bool, msg string) {
		if ok {
			s.metrics.accepted(ev.Kind)
		} else {
			s.metrics.rejected(ev.Kind, msg)
		}
		c.send(s.hardCtx, encodeOK(ev.ID, ok, msg))
	}
	if p.reason != "" {
		answer(false, p.reason)
		return
	}
	if ev.Kind == nostr.KindClientAuthentication {
		answer(false, "invalid: AUTH events belong in an AUTH message")
		return
	}
	ctx := contextFor(s.hardCtx, c)
	if reject, msg := policy.Check(ctx, ev, s.rules); reject {
		answer(false, withPrefix(msg, "blocked"))
		return
	}
	if msg := checkVanish(ev, c.serviceURL); msg != "" {
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
			c.send(s.hardCtx, encodeOK(ev.ID, ok, msg))
			return
		}
		answer(ok, msg)
		return
	}
	s.metrics.removed(st.res.Deleted)
	msg := st.okMessage
	if msg == "" && st.res.Seq > 0 {
		msg = seqMessage(st.res.Seq)
	}
	answer(true, msg)
	if st.broadcast != nil {
		s.broadcaster.Broadcast(Delivery{Event: st.broadcast, Seq: st.res.Seq, Ticket: ticket})
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
	}
	if taken, ok := errors.AsType[*storage.SlotTakenError](err); ok {
		return false, "blocked: slot taken by " + taken.Holder
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
	return policy.WithConn(ctx, policy.Conn{IP: c.ip, AuthedPubKey: c.authedPubKey()})
}
