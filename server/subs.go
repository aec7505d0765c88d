package server

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

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
	id       string
	conn     *conn
	filters  nostr.Filters     // as the stored query runs them
	compiled []*compiledFilter // as live events are matched
	values   int               // filter values counted against the caps
	prefix   []byte            // `["EVENT",<id>,`

	// dispatched is the last match that delivered to this subscription;
	// only the dispatcher touches it.
	dispatched uint64
	// registered: in the registry's index (registry.mu).
	registered bool

	mu          sync.Mutex
	state       subState
	buffer      []bufferedEvent
	bufferBytes int
	overflow    bool
	// sent holds the ids of stored events already sent; storedUpTo is the
	// last commit ticket issued when the stored query ended. A live event
	// with a higher ticket began committing after the query and cannot be
	// among them. completedBefore is the number of commits completed when
	// the stored query began: the query saw every one of them, so none is
	// live for this subscription, whether it sent it or a limit left it out.
	sent            map[[32]byte]struct{}
	storedUpTo      uint64
	completedBefore uint64
	liveAt          time.Time // when the subscription went live
	// ordered is set for a since_seq subscription: live events are sent in
	// seq order with their seq, skipping any the stored page sent.
	ordered *orderedRead
	// watched lists the groups this subscription made the ordering layer
	// watch (GroupWatcher); the conn's reader only.
	watched []string
}

// remoteGrace is how long a subscription keeps the ids of its stored
// results after going live, to drop copies of them that arrive late from
// other instances (through the bus, or a gap fill) and carry no local
// commit ticket.
const remoteGrace = 5 * time.Second

type bufferedEvent struct {
	d    Delivery
	body []byte
	id   [32]byte
	at   time.Time
}

func (sub *subscription) close() {
	sub.mu.Lock()
	sub.state = subClosed
	sub.buffer = nil
	sub.sent = nil
	sub.mu.Unlock()
}

// bufferLimits bound the live events a subscription holds while its stored
// query runs: a quarter of the outbound queue, in messages and in bytes, so
// the flush after EOSE fits in the half kept for live events.
func (sub *subscription) bufferLimits() (msgs, bytes int) {
	l := sub.conn.srv.limits
	return max(1, l.OutboundQueue/4), l.OutboundBytes / 4
}

// deliver hands a live event to the subscription (from the dispatcher).
func (sub *subscription) deliver(d Delivery, body []byte, id [32]byte, at time.Time) {
	if d.Event.Kind == kindGiftWrap && !mayReadWrap(d.Event, sub.conn.authedPubKey()) {
		return
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	switch sub.state {
	case subClosed:
	case subLoading:
		maxMsgs, maxBytes := sub.bufferLimits()
		if len(sub.buffer) >= maxMsgs || sub.bufferBytes+len(body) > maxBytes {
			sub.overflow = true
			return
		}
		sub.buffer = append(sub.buffer, bufferedEvent{d: d, body: body, id: id, at: at})
		sub.bufferBytes += len(body)
	case subLive:
		sub.sendLiveLocked(d, body, id, at)
	}
}

func (sub *subscription) sendLiveLocked(d Delivery, body []byte, id [32]byte, at time.Time) {
	m := outMsg{prefix: sub.prefix, body: body, suffix: eventSuffix, event: true, id: id, at: at}
	if o := sub.ordered; o != nil {
		// The ordering layer delivers each group in seq order; anything at
		// or below the cursor was in the stored page (or is a repeat).
		if d.Seq <= o.lastSent {
			return
		}
		o.lastSent = d.Seq
		m.suffix = seqSuffix(d.Seq, false, d.Releases)
	} else if sub.alreadySentLocked(d, id) {
		return
	}
	if !sub.conn.out.pushLive(m) {
		sub.conn.overflow()
	}
}

func (sub *subscription) alreadySentLocked(d Delivery, id [32]byte) bool {
	if d.Ticket != 0 && d.Committed != 0 && d.Committed <= sub.completedBefore {
		return true // stored before the query began
	}
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
	_, dup := sub.sent[id]
	return dup
}

func idKey(id string) [32]byte {
	var k [32]byte
	_, _ = hex.Decode(k[:], []byte(id))
	return k
}

// goLive sends EOSE with its NIP-67 hint (eoseFinish or eoseMore) and the
// buffered live events, atomically with respect to broadcasts, and switches
// the subscription to live.
func (sub *subscription) goLive(storedUpTo uint64, hint string) {
	c := sub.conn
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.state != subLoading {
		return
	}
	sub.storedUpTo = storedUpTo
	sub.liveAt = time.Now()
	if !c.out.pushLive(plainMsg(encodeEOSEHint(sub.id, hint))) {
		c.overflow()
		return
	}
	if sub.overflow {
		// Too many live events arrived during the stored query to hold them
		// all; the client must resubscribe (since its last event).
		sub.state = subClosed
		sub.buffer = nil
		c.out.pushLive(plainMsg(encodeClosed(sub.id, "error: too many live events while loading stored ones; subscribe again")))
		return
	}
	for _, b := range sub.buffer {
		sub.sendLiveLocked(b.d, b.body, b.id, b.at)
	}
	sub.buffer = nil
	sub.bufferBytes = 0
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

// clip copies s to a slice of its own length (nil stays nil, empty stays
// empty: they mean different things in a filter).
func clip[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

// parseFilter decodes one NIP-01 filter and checks its values.
func parseFilter(raw json.RawMessage, f *nostr.Filter) string {
	if len(raw) == 0 || raw[0] != '{' {
		return "invalid: a filter must be a JSON object"
	}
	if err := f.UnmarshalJSON(raw); err != nil {
		return "invalid: filter does not parse"
	}
	// A live subscription keeps its filter: the decoder's tag names point
	// into raw (the whole REQ message would stay in memory) and its lists
	// have spare capacity, so both are copied to size.
	f.IDs, f.Authors, f.Kinds = clip(f.IDs), clip(f.Authors), clip(f.Kinds)
	if len(f.Tags) > 0 {
		tags := make(nostr.TagMap, len(f.Tags))
		for name, vs := range f.Tags {
			tags[strings.Clone(name)] = clip(vs)
		}
		f.Tags = tags
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
	if err := storage.Indexable(*f); err != nil {
		return "invalid: " + err.Error()
	}
	return ""
}

func (c *conn) handleReq(args []json.RawMessage) {
	s := c.srv
	subID, filters, ordered, ok := c.parseReqArgs(args)
	if !ok {
		return
	}
	closed := func(msg string) { c.send(s.hardCtx, encodeClosed(subID, msg)) }
	if old, exists := c.subs[subID]; exists {
		// NIP-01: a REQ with an open id replaces that subscription.
		c.dropSub(old)
	} else if len(c.subs) >= s.limits.MaxSubscriptions {
		closed(fmt.Sprintf("rate-limited: too many open subscriptions (max %d)", s.limits.MaxSubscriptions))
		return
	}
	if ordered == nil {
		var needAuth bool
		if filters, needAuth = restrictWraps(filters, c.authedPubKey()); needAuth {
			c.askAuth(subID)
			return
		}
	}
	values := 0
	for _, f := range filters {
		values += filterValues(f)
	}
	if msg := c.takeValues(values); msg != "" {
		closed(msg)
		return
	}
	if !s.queries.Take(c.group, 1) {
		c.giveValues(values)
		closed(fmt.Sprintf("rate-limited: too many stored queries in flight from your address (max %d)", s.queries.Max()))
		return
	}
	// The query is in flight until its EOSE: the slot is given back before
	// the EOSE is sent, so a client that saw EOSE may query again at once.
	queryDone := false
	endQuery := func() {
		if !queryDone {
			queryDone = true
			s.queries.Give(c.group, 1)
		}
	}
	defer endQuery()
	sub := &subscription{
		id:      subID,
		conn:    c,
		filters: filters,
		values:  values,
		prefix:  eventPrefix(subID),
		state:   subLoading,
		sent:    make(map[[32]byte]struct{}),
		ordered: ordered,
	}
	for _, f := range filters {
		sub.compiled = append(sub.compiled, compileFilter(sub, f))
	}
	// Register before the stored query so nothing committed meanwhile is
	// missed; it waits in the buffer until EOSE.
	sub.completedBefore = s.tracker.completed()
	s.registry.add(sub)
	c.subs[subID] = sub

	ctx := contextFor(s.hardCtx, c)
	sub.watched = s.watchGroups(ctx, filters)
	start := time.Now()
	// more: a limit (the filter's, or the MaxLimit clamp) cut the stored
	// results, which the EOSE says with NIP-67's ["more"] hint.
	var more bool
	var err error
	if ordered != nil {
		more, err = c.sendOrderedPage(ctx, sub)
	} else {
		more, err = c.sendStoredOrHandout(ctx, sub)
	}
	s.metrics.observeQuery("req", start, queryFailure(err))
	if err != nil {
		c.dropSub(sub)
		endQuery()
		select {
		case <-c.dead:
			return
		default:
		}
		if msg := reqRefusal(err); msg != "" {
			closed(msg)
			return
		}
		s.log.Error("querying stored events", "err", err)
		closed("error: could not query stored events")
		return
	}
	if more && ordered != nil {
		// The page was cut short: the client continues from the cursor
		// instead of going live.
		c.dropSub(sub)
		endQuery()
		c.send(s.hardCtx, encodeEOSEHint(subID, eoseMore))
		closed("more: after seq " + strconv.FormatInt(ordered.lastSent, 10))
		return
	}
	endQuery()
	hint := eoseFinish
	if more {
		// A plain REQ stays open for live events all the same (NIP-01); the
		// client pages back with until if it wants the rest.
		hint = eoseMore
	}
	sub.goLive(s.tracker.lastIssued(), hint)
}

// takeValues counts n filter values against the connection's and the
// address's caps; it returns the refusal, or "".
func (c *conn) takeValues(n int) string {
	l := c.srv.limits
	switch {
	case n > l.MaxFilterValues:
		return fmt.Sprintf("invalid: a subscription may hold at most %d filter values (ids, authors, kinds and tag values), this one holds %d", l.MaxFilterValues, n)
	case c.values+n > l.MaxFilterValues:
		return fmt.Sprintf("rate-limited: too many filter values in this connection's open subscriptions (max %d); close some first", l.MaxFilterValues)
	case !c.srv.filterValues.Take(c.group, n):
		return fmt.Sprintf("rate-limited: too many filter values in open subscriptions from your address (max %d)", l.MaxFilterValuesPerIP)
	}
	c.values += n
	return ""
}

func (c *conn) giveValues(n int) {
	c.values -= n
	c.srv.filterValues.Give(c.group, n)
}

// dropSub ends sub and gives back what it counted.
func (c *conn) dropSub(sub *subscription) {
	c.srv.unwatchGroups(sub.watched)
	sub.watched = nil
	c.srv.registry.remove(sub)
	if c.subs[sub.id] == sub {
		delete(c.subs, sub.id)
	}
	c.giveValues(sub.values)
}

// storedPageBytes bounds the events one page of a stored query holds in
// memory (estimated by eventSize). The page is read, the query ends and
// gives its database connection back, and only then is the page written to
// the client, so a client that reads slowly never holds a connection.
const storedPageBytes = 1 << 20

// sendStored sends each filter's stored events (limit clamped, newest
// first), each event at most once. more reports that a limit (the filter's
// own or the MaxLimit clamp) left stored matches of some filter unsent. A
// "limit": 0 filter asks for no stored events, so none are left unsent:
// with only such filters the EOSE says "finish".
func (c *conn) sendStored(ctx context.Context, sub *subscription) (more bool, err error) {
	maxLimit := c.srv.limits.MaxLimit
	authed := c.authedPubKey()
	for _, f := range sub.filters {
		if f.LimitZero {
			continue // "limit": 0 asks for live events only
		}
		if f.Limit <= 0 || f.Limit > maxLimit {
			f.Limit = maxLimit
		}
		cut, err := c.sendFilter(ctx, sub, f, authed)
		if err != nil {
			return false, err
		}
		more = more || cut
	}
	return more, nil
}

// sendFilter sends f's stored events page by page, at most f.Limit of
// them. A later page asks for the events at or before the previous page's
// last created_at and skips the ones already seen at that second (results
// come newest first, ties by id, so those come first again). Every query
// asks for one result more than the limit leaves: when that one comes, the
// limit cut the results (more), and it is neither sent nor recorded as
// sent. That row may be one an earlier filter sent, or a gift wrap this
// client may not read: the hint then errs towards a needless re-query,
// never a false "finish".
func (c *conn) sendFilter(ctx context.Context, sub *subscription, f nostr.Filter, authed string) (more bool, err error) {
	total := f.Limit // results the filter may consume, sent or not
	consumed := 0
	for {
		at := time.Now()
		var page []*nostr.Event
		pageBytes, sameSecond, cut := 0, 0, false
		var last nostr.Timestamp
		f.Limit = total - consumed + 1
		for ev, err := range c.srv.store.Query(ctx, f) {
			if err != nil {
				return false, err
			}
			if consumed >= total {
				more = true // the one past the limit: a stored match is left
				break
			}
			if pageBytes >= storedPageBytes {
				cut = true
				break // releases the database connection
			}
			if ev.CreatedAt != last {
				last, sameSecond = ev.CreatedAt, 0
			}
			sameSecond++
			consumed++
			k := idKey(ev.ID)
			sub.mu.Lock()
			_, dup := sub.sent[k]
			sub.sent[k] = struct{}{}
			sub.mu.Unlock()
			if dup {
				continue // sent by an earlier filter or page
			}
			if ev.Kind == kindGiftWrap && !mayReadWrap(ev, authed) {
				continue
			}
			page = append(page, ev)
			pageBytes += eventSize(ev)
		}
		for _, ev := range page {
			m := outMsg{prefix: sub.prefix, body: marshalEvent(ev), suffix: eventSuffix, event: true, id: idKey(ev.ID), at: at}
			if c.out.pushWait(ctx, m) != nil {
				return false, nil // the connection is gone; nothing to report
			}
		}
		if !cut {
			return more, nil
		}
		// Cut by size, never with the limit reached (that is checked
		// first). The results at the last second come again first; they
		// were counted once already.
		consumed -= sameSecond
		until := last
		f.Until = &until
	}
}

func (c *conn) handleCount(args []json.RawMessage) {
	s := c.srv
	subID, filters, ok := c.parseSubArgs("COUNT", args)
	if !ok {
		return
	}
	closed := func(msg string) { c.send(s.hardCtx, encodeClosed(subID, msg)) }
	authed := c.authedPubKey()
	if authed == "" && allWraps(filters) {
		c.askAuth(subID)
		return
	}
	if !s.queries.Take(c.group, 1) {
		closed(fmt.Sprintf("rate-limited: too many stored queries in flight from your address (max %d)", s.queries.Max()))
		return
	}
	// The bound is a deadline on the context the store sees; the stores
	// stop the statement inside the database when it passes (SQLite
	// interrupts it; PostgreSQL needs statement_timeout, see storage).
	ctx, cancel := context.WithTimeout(contextFor(s.hardCtx, c), s.limits.CountTimeout)
	defer cancel()
	start := time.Now()
	var total int64
	var err error
	// Filters are counted separately and summed: an event matching two
	// filters counts twice (NIP-45 leaves precision to the relay).
	for _, f := range filters {
		var n int64
		if n, err = c.countFilter(ctx, f, authed); err != nil {
			break
		}
		total += n
	}
	// Given back before the answer goes out, like a REQ's before its EOSE.
	s.queries.Give(c.group, 1)
	s.metrics.observeQuery("count", start, err)
	switch {
	case err != nil && ctx.Err() == context.DeadlineExceeded:
		closed(fmt.Sprintf("error: counting took longer than %v; narrow the filter", s.limits.CountTimeout))
	case err != nil:
		s.log.Error("counting stored events", "err", err)
		closed("error: could not count stored events")
	default:
		c.send(s.hardCtx, encodeCount(subID, total))
	}
}

// countFilter counts f's events a client authenticated as authed may see.
func (c *conn) countFilter(ctx context.Context, f nostr.Filter, authed string) (int64, error) {
	plus, minus := countParts(f, authed)
	var n int64
	for i, part := range append(plus, minus...) {
		k, err := c.srv.store.Count(ctx, part)
		if err != nil {
			return 0, err
		}
		if i < len(plus) {
			n += k
		} else {
			n -= k
		}
	}
	return max(n, 0), nil
}

// askAuth answers a request that needs NIP-42 AUTH first: the challenge
// again, then CLOSED with auth-required.
func (c *conn) askAuth(subID string) {
	c.send(c.srv.hardCtx, encodeAuthChallenge(c.challenge))
	c.send(c.srv.hardCtx, encodeClosed(subID, "auth-required: gift wraps (kind 1059) are served only to their recipient; authenticate (NIP-42) as the p-tagged pubkey"))
}

// commitTracker issues increasing tickets to commits in flight, so a
// subscription can tell whether a live event may also be among the stored
// results it already sent; and numbers the commits in the order they
// completed, so it can tell one that completed before its stored query
// began.
type commitTracker struct {
	mu       sync.Mutex
	last     uint64
	inFlight map[uint64]int // holders of each ticket
	commits  uint64         // commits completed so far (committed)
}

func newCommitTracker() *commitTracker {
	return &commitTracker{inFlight: make(map[uint64]int)}
}

func (t *commitTracker) begin() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last++
	t.inFlight[t.last] = 1
	return t.last
}

// hold keeps ticket in flight until a matching end: the registry holds it
// while the event waits for the dispatcher.
func (t *commitTracker) hold(ticket uint64) {
	if ticket == 0 {
		return
	}
	t.mu.Lock()
	t.inFlight[ticket]++
	t.mu.Unlock()
}

// end is called after the event's broadcast, and by the dispatcher after
// its delivery.
func (t *commitTracker) end(ticket uint64) {
	if ticket == 0 {
		return
	}
	t.mu.Lock()
	if n := t.inFlight[ticket]; n > 1 {
		t.inFlight[ticket] = n - 1
	} else {
		delete(t.inFlight, ticket)
	}
	t.mu.Unlock()
}

// committed records that a commit completed (its Save returned) and
// returns its place in completion order.
func (t *commitTracker) committed() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.commits++
	return t.commits
}

// completed is the number of commits completed so far.
func (t *commitTracker) completed() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.commits
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
