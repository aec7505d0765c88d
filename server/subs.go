package server

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/nbd-wtf/go-nostr"
)

// registry is the locked set of live subscriptions of every connection.
type registry struct {
	mu   sync.RWMutex
	subs map[*subscription]struct{}
}

func newRegistry() *registry {
	return &registry{subs: make(map[*subscription]struct{})}
}

func (r *registry) add(sub *subscription) {
	r.mu.Lock()
	r.subs[sub] = struct{}{}
	r.mu.Unlock()
}

func (r *registry) remove(sub *subscription) {
	r.mu.Lock()
	delete(r.subs, sub)
	r.mu.Unlock()
	sub.close()
}

// Broadcast queues d for every matching subscription without waiting.
func (r *registry) Broadcast(d Delivery) {
	var evJSON []byte
	r.mu.RLock()
	defer r.mu.RUnlock()
	for sub := range r.subs {
		if !sub.filters.Match(d.Event) {
			continue
		}
		if evJSON == nil {
			evJSON = marshalEvent(d.Event)
		}
		sub.deliver(d, evJSON)
	}
}

type subState int

const (
	subLoading subState = iota // stored query running; live events buffered
	subLive
	subClosed
)

// subscription is one REQ. While its stored query runs, live events are
// buffered (bounded); after EOSE the buffer is flushed, skipping events the
// stored query already sent, and later events go straight to the outbox.
type subscription struct {
	id      string
	conn    *conn
	filters nostr.Filters
	prefix  []byte // `["EVENT",<id>,`

	mu        sync.Mutex
	state     subState
	buffer    []bufferedEvent
	bufferMax int
	overflow  bool
	// sent holds the ids of stored events already sent; storedUpTo is the
	// last commit ticket issued when the stored query ended. A live event
	// with a higher ticket began committing after the query and cannot be
	// among them.
	sent       map[[32]byte]struct{}
	storedUpTo uint64
	liveAt     time.Time // when the subscription went live
	// ordered is set for a since_seq subscription: live events are sent in
	// seq order with their seq, skipping any the stored page sent.
	ordered *orderedRead
}

// remoteGrace is how long a subscription keeps the ids of its stored
// results after going live, to drop copies of them that arrive late from
// other instances (through the bus, or a gap fill) and carry no local
// commit ticket.
const remoteGrace = 5 * time.Second

type bufferedEvent struct {
	d      Delivery
	evJSON []byte
}

func (sub *subscription) close() {
	sub.mu.Lock()
	sub.state = subClosed
	sub.buffer = nil
	sub.sent = nil
	sub.mu.Unlock()
}

func (sub *subscription) deliver(d Delivery, evJSON []byte) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	switch sub.state {
	case subClosed:
	case subLoading:
		if len(sub.buffer) >= sub.bufferMax {
			sub.overflow = true
			return
		}
		sub.buffer = append(sub.buffer, bufferedEvent{d: d, evJSON: evJSON})
	case subLive:
		sub.sendLiveLocked(d, evJSON)
	}
}

func (sub *subscription) sendLiveLocked(d Delivery, evJSON []byte) {
	var msg []byte
	if o := sub.ordered; o != nil {
		// The ordering layer delivers each group in seq order; anything at
		// or below the cursor was in the stored page (or is a repeat).
		if d.Seq <= o.lastSent {
			return
		}
		o.lastSent = d.Seq
		msg = encodeSequencedEvent(sub.prefix, evJSON, d.Seq, false)
	} else {
		if sub.alreadySentLocked(d) {
			return
		}
		msg = encodeEvent(sub.prefix, evJSON)
	}
	if !sub.conn.out.pushLive(msg) {
		sub.conn.overflow()
	}
}

func (sub *subscription) alreadySentLocked(d Delivery) bool {
	if sub.sent == nil {
		return false
	}
	if d.Ticket != 0 && d.Ticket > sub.storedUpTo {
		// Once nothing that began before the query is still in flight here,
		// and events other instances committed before it have had time to
		// arrive, no stored event can come live any more: drop the id set.
		if sub.conn.srv.tracker.oldestInFlight() > sub.storedUpTo && time.Since(sub.liveAt) > remoteGrace {
			sub.sent = nil
		}
		return false
	}
	_, dup := sub.sent[idKey(d.Event.ID)]
	return dup
}

func idKey(id string) [32]byte {
	var k [32]byte
	_, _ = hex.Decode(k[:], []byte(id))
	return k
}

// goLive sends EOSE and the buffered live events, atomically with respect to
// broadcasts, and switches the subscription to live.
func (sub *subscription) goLive(storedUpTo uint64) {
	c := sub.conn
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.state != subLoading {
		return
	}
	sub.storedUpTo = storedUpTo
	sub.liveAt = time.Now()
	if !c.out.pushLive(encodeEOSE(sub.id)) {
		c.overflow()
		return
	}
	if sub.overflow {
		// Too many live events arrived during the stored query to hold them
		// all; the client must resubscribe (since its last event).
		sub.state = subClosed
		sub.buffer = nil
		c.out.pushLive(encodeClosed(sub.id, "error: too many live events while loading stored ones; subscribe again"))
		return
	}
	for _, b := range sub.buffer {
		sub.sendLiveLocked(b.d, b.evJSON)
	}
	sub.buffer = nil
	sub.state = subLive
}

// parseSubArgs reads the subscription id and filters of a REQ or COUNT.
// On failure it answers (CLOSED when the id is usable, NOTICE otherwise).
func (c *conn) parseSubArgs(label string, args []json.RawMessage) (string, nostr.Filters, bool) {
	lim := c.srv.limits
	var subID string
	if len(args) == 0 || json.Unmarshal(args[0], &subID) != nil {
		c.notice(fmt.Sprintf("invalid: %s needs a subscription id string", label))
		return "", nil, false
	}
	if subID == "" || len(subID) > lim.MaxSubIDLength {
		c.notice(fmt.Sprintf("invalid: subscription id must be 1 to %d bytes", lim.MaxSubIDLength))
		return "", nil, false
	}
	closed := func(msg string) (string, nostr.Filters, bool) {
		c.send(c.srv.hardCtx, encodeClosed(subID, msg))
		return "", nil, false
	}
	raw := args[1:]
	if len(raw) == 0 {
		return closed(fmt.Sprintf("invalid: %s needs at least one filter", label))
	}
	if len(raw) > lim.MaxFilters {
		return closed(fmt.Sprintf("invalid: too many filters (max %d)", lim.MaxFilters))
	}
	filters := make(nostr.Filters, len(raw))
	for i, r := range raw {
		if msg := parseFilter(r, &filters[i]); msg != "" {
			return closed(msg)
		}
	}
	return subID, filters, true
}

// parseReqArgs is parseSubArgs for REQ, which may also be a since_seq read.
func (c *conn) parseReqArgs(args []json.RawMessage) (string, nostr.Filters, *orderedRead, bool) {
	subID, filters, ok := c.parseSubArgs("REQ", args)
	if !ok {
		return "", nil, nil, false
	}
	o, msg := parseOrderedRead(args[1:], c.srv.limits.MaxLimit)
	if msg != "" {
		c.send(c.srv.hardCtx, encodeClosed(subID, msg))
		return "", nil, nil, false
	}
	if o != nil {
		filters = nostr.Filters{o.filter()}
	}
	return subID, filters, o, true
}

// parseFilter decodes one NIP-01 filter and checks its values.
func parseFilter(raw json.RawMessage, f *nostr.Filter) string {
	if len(raw) == 0 || raw[0] != '{' {
		return "invalid: a filter must be a JSON object"
	}
	if err := f.UnmarshalJSON(raw); err != nil {
		return "invalid: filter does not parse"
	}
	for _, id := range f.IDs {
		if !policy.IsLowerHex(id, 64) {
			return "invalid: ids must be 64 lowercase hex characters"
		}
	}
	for _, a := range f.Authors {
		if !policy.IsLowerHex(a, 64) {
			return "invalid: authors must be 64 lowercase hex characters"
		}
	}
	for _, k := range f.Kinds {
		if k < 0 || k > 65535 {
			return "invalid: kinds must be between 0 and 65535"
		}
	}
	if f.Limit < 0 {
		return "invalid: limit must not be negative"
	}
	return ""
}

func (c *conn) handleReq(args []json.RawMessage) {
	s := c.srv
	subID, filters, ordered, ok := c.parseReqArgs(args)
	if !ok {
		return
	}
	if old, exists := c.subs[subID]; exists {
		// NIP-01: a REQ with an open id replaces that subscription.
		s.registry.remove(old)
		delete(c.subs, subID)
	} else if len(c.subs) >= s.limits.MaxSubscriptions {
		c.send(s.hardCtx, encodeClosed(subID,
			fmt.Sprintf("rate-limited: too many open subscriptions (max %d)", s.limits.MaxSubscriptions)))
		return
	}
	sub := &subscription{
		id:      subID,
		conn:    c,
		filters: filters,
		prefix:  eventPrefix(subID),
		state:   subLoading,
		// Live events held during the stored query: a quarter of the queue,
		// so the flush after EOSE fits in the half kept for live events.
		bufferMax: max(1, s.limits.OutboundQueue/4),
		sent:      make(map[[32]byte]struct{}),
		ordered:   ordered,
	}
	// Register before the stored query so nothing committed meanwhile is
	// missed; it waits in the buffer until EOSE.
	s.registry.add(sub)
	c.subs[subID] = sub

	ctx := contextFor(s.hardCtx, c)
	s.watchGroups(ctx, filters)
	start := time.Now()
	var more bool
	var err error
	if ordered != nil {
		more, err = c.sendOrderedPage(ctx, sub)
	} else {
		err = c.sendStoredOrHandout(ctx, sub)
	}
	s.metrics.observeQuery("req", start, queryFailure(err))
	if err != nil {
		s.registry.remove(sub)
		delete(c.subs, subID)
		select {
		case <-c.dead:
			return
		default:
		}
		if msg := reqRefusal(err); msg != "" {
			c.send(s.hardCtx, encodeClosed(subID, msg))
			return
		}
		s.log.Error("querying stored events", "err", err)
		c.send(s.hardCtx, encodeClosed(subID, "error: could not query stored events"))
		return
	}
	if more {
		// The page was cut short: the client continues from the cursor
		// instead of going live.
		s.registry.remove(sub)
		delete(c.subs, subID)
		c.send(s.hardCtx, encodeEOSE(subID))
		c.send(s.hardCtx, encodeClosed(subID, "more: after seq "+strconv.FormatInt(ordered.lastSent, 10)))
		return
	}
	sub.goLive(s.tracker.lastIssued())
}

// sendStored streams each filter's stored events (limit clamped, newest
// first), each event at most once.
func (c *conn) sendStored(ctx context.Context, sub *subscription) error {
	maxLimit := c.srv.limits.MaxLimit
	for _, f := range sub.filters {
		if f.LimitZero {
			continue // "limit": 0 asks for live events only
		}
		if f.Limit <= 0 || f.Limit > maxLimit {
			f.Limit = maxLimit
		}
		for ev, err := range c.srv.store.Query(ctx, f) {
			if err != nil {
				return err
			}
			k := idKey(ev.ID)
			sub.mu.Lock()
			_, dup := sub.sent[k]
			sub.sent[k] = struct{}{}
			sub.mu.Unlock()
			if dup {
				continue
			}
			if !c.send(ctx, encodeEvent(sub.prefix, marshalEvent(ev))) {
				return nil // the connection is gone; nothing to report
			}
		}
	}
	return nil
}

func (c *conn) handleCount(args []json.RawMessage) {
	s := c.srv
	subID, filters, ok := c.parseSubArgs("COUNT", args)
	if !ok {
		return
	}
	ctx := contextFor(s.hardCtx, c)
	start := time.Now()
	var total int64
	var err error
	// Filters are counted separately and summed: an event matching two
	// filters counts twice (NIP-45 leaves precision to the relay).
	for _, f := range filters {
		var n int64
		if n, err = s.store.Count(ctx, f); err != nil {
			break
		}
		total += n
	}
	s.metrics.observeQuery("count", start, err)
	if err != nil {
		s.log.Error("counting stored events", "err", err)
		c.send(s.hardCtx, encodeClosed(subID, "error: could not count stored events"))
		return
	}
	c.send(s.hardCtx, encodeCount(subID, total))
}

// commitTracker issues increasing tickets to commits in flight, so a
// subscription can tell whether a live event may also be among the stored
// results it already sent.
type commitTracker struct {
	mu       sync.Mutex
	last     uint64
	inFlight map[uint64]struct{}
}

func newCommitTracker() *commitTracker {
	return &commitTracker{inFlight: make(map[uint64]struct{})}
}

func (t *commitTracker) begin() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last++
	t.inFlight[t.last] = struct{}{}
	return t.last
}

// end is called after the event's broadcast.
func (t *commitTracker) end(ticket uint64) {
	t.mu.Lock()
	delete(t.inFlight, ticket)
	t.mu.Unlock()
}

func (t *commitTracker) lastIssued() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// oldestInFlight returns the lowest ticket still in flight, or one past the
// last issued when none is.
func (t *commitTracker) oldestInFlight() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	oldest := t.last + 1
	for k := range t.inFlight {
		oldest = min(oldest, k)
	}
	return oldest
}
