package mlsverify

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/marmot"
)

// Retry bounds: how often a request is tried again after the connection
// broke or the relay said rate-limited:, and how long between tries.
const (
	maxAttempts   = 6
	firstBackoff  = 100 * time.Millisecond
	maxBackoff    = 3 * time.Second
	moreReadAfter = "more: after seq "
)

// conn is one websocket connection to one relay, shared by several
// simulated members: a single address gets few connections on a public
// relay (Burrow allows 64 by default), and group events are neither read
// nor written with AUTH, so sharing one says nothing a member's own would
// not. It reconnects when the connection breaks, retries what was in
// flight, and follows the group's kind 445 events: a since_seq read where
// the relay advertises it (resumed from the last seq after a reconnect), a
// plain REQ otherwise (resumed with an overlap), handing every event to the
// members attached to it.
type conn struct {
	s   *sim
	url string

	mu      sync.Mutex
	c       *marmot.Client
	members []*member
	// cursor is the last seq delivered (since_seq) or the newest
	// created_at (plain REQ).
	cursor uint64
	// seen are the event ids delivered on this connection, to tell a
	// re-read after a reconnect from a new event.
	seen map[string]bool
	// dropped counts the connections this conn closed itself (drop): a
	// subscription that outlives one no longer moves the cursor, since a
	// closing marmot.Client may hand over some of the frames it had
	// already read and not others.
	dropped int

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func newConn(s *sim, url string) *conn {
	return &conn{s: s, url: url, seen: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// client returns the open connection, dialling (again) when there is none
// or it broke, with bounded retries.
func (cn *conn) client(ctx context.Context) (*marmot.Client, error) {
	cn.mu.Lock()
	c := cn.c
	cn.mu.Unlock()
	if c != nil && c.Err() == nil {
		return c, nil
	}
	var last error
	backoff := firstBackoff
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			if err := sleep(ctx, backoff); err != nil {
				return nil, errors.Join(err, last)
			}
			backoff = min(2*backoff, maxBackoff)
		}
		nc, err := marmot.Dial(ctx, cn.url, marmot.ClientOptions{Timeout: cn.s.cfg.Timeout})
		if err != nil {
			last = err
			continue
		}
		cn.mu.Lock()
		old := cn.c
		if old != nil && old.Err() == nil {
			// Another caller reconnected first.
			cn.mu.Unlock()
			nc.Close()
			return old, nil
		}
		cn.c = nc
		cn.mu.Unlock()
		if old != nil {
			cn.s.stats.reconnects.Add(1)
			old.Close()
		}
		return nc, nil
	}
	return nil, last
}

// drop closes the connection as a network fault would; the next request
// and the follower reconnect, and the follower resumes from the cursor as
// it was when the connection was closed.
func (cn *conn) drop() {
	cn.mu.Lock()
	c := cn.c
	cn.dropped++
	cn.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// close ends the follower and the connection for good.
func (cn *conn) close() {
	cn.stopOnce.Do(func() { close(cn.stop) })
	cn.drop()
}

// retryable reports whether a failed request may be sent again: the
// connection broke (it is re-dialled), or the relay asked to slow down.
func retryable(err error) bool {
	var e *marmot.Error
	if errors.As(err, &e) && errors.Is(e.Check, marmot.ErrRejected) {
		return strings.HasPrefix(e.Reason, "rate-limited:")
	}
	return errors.Is(err, marmot.ErrRelay)
}

// do runs one request with the connection, retrying while retryable.
// Re-sending an event is safe: a relay answers a stored one as a
// duplicate, and a commit-slot claim already granted with the same seq.
func (cn *conn) do(ctx context.Context, f func(*marmot.Client) error) error {
	backoff := firstBackoff
	var err error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			if serr := sleep(ctx, backoff); serr != nil {
				return errors.Join(serr, err)
			}
			backoff = min(2*backoff, maxBackoff)
		}
		var c *marmot.Client
		if c, err = cn.client(ctx); err != nil {
			return err
		}
		if err = f(c); err == nil || !retryable(err) {
			return err
		}
		if errors.Is(err, marmot.ErrRejected) {
			cn.s.stats.rateLimited.Add(1)
		} else {
			cn.s.stats.retries.Add(1)
		}
	}
	return err
}

func (cn *conn) publish(ctx context.Context, ev *nostr.Event) (marmot.OK, error) {
	var ok marmot.OK
	err := cn.do(ctx, func(c *marmot.Client) (err error) { ok, err = c.Publish(ctx, ev); return err })
	return ok, err
}

func (cn *conn) publishCommit(ctx context.Context, ev *nostr.Event, slotKey []byte) (marmot.OK, error) {
	var ok marmot.OK
	err := cn.do(ctx, func(c *marmot.Client) (err error) { ok, err = c.PublishCommit(ctx, ev, slotKey); return err })
	return ok, err
}

func (cn *conn) publishRelease(ctx context.Context, ev *nostr.Event, slotKey []byte, holder string) (marmot.OK, error) {
	var ok marmot.OK
	err := cn.do(ctx, func(c *marmot.Client) (err error) { ok, err = c.PublishRelease(ctx, ev, slotKey, holder); return err })
	return ok, err
}

func (cn *conn) fetch(ctx context.Context, filters ...any) ([]marmot.Delivered, error) {
	var out []marmot.Delivered
	err := cn.do(ctx, func(c *marmot.Client) (err error) { out, err = c.Fetch(ctx, filters...); return err })
	return out, err
}

// groupEvents reads a group's stored events after cursor (see
// marmot.Client.GroupEvents).
func (cn *conn) groupEvents(ctx context.Context, h [32]byte, cursor uint64) ([]marmot.Delivered, uint64, error) {
	var out []marmot.Delivered
	next := cursor
	err := cn.do(ctx, func(c *marmot.Client) (err error) { out, next, err = c.GroupEvents(ctx, h, cursor); return err })
	return out, next, err
}

func (cn *conn) attach(m *member) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	cn.members = append(cn.members, m)
}

// follow reads the group's kind 445 events until close, re-subscribing
// from the cursor when the connection breaks or a since_seq page ends.
func (cn *conn) follow(h [32]byte) {
	defer close(cn.done)
	ctx := cn.s.ctx
	backoff := firstBackoff
	for {
		select {
		case <-cn.stop:
			return
		default:
		}
		c, err := cn.client(ctx)
		if err != nil {
			cn.s.fault(fmt.Errorf("following the group on %s: %w", cn.url, err), nil)
			if sleep(ctx, maxBackoff) != nil {
				return
			}
			continue
		}
		cn.mu.Lock()
		cursor, gen := cn.cursor, cn.dropped
		cn.mu.Unlock()
		sub, err := c.Subscribe(ctx, cn.groupFilter(h, cursor))
		if err != nil {
			continue // the connection broke; client() re-dials
		}
		more, ended := cn.read(sub, gen)
		if ended {
			return
		}
		switch err := sub.Err(); {
		case more > 0:
			cn.mu.Lock()
			cn.cursor = max(cn.cursor, more)
			cn.mu.Unlock()
			backoff = firstBackoff
		case err == nil, errors.Is(err, marmot.ErrRelay):
			// Closed by a fault or a restart: reconnect at once.
		default:
			// The relay closed the subscription (rate-limited:, error:):
			// try again after a pause.
			cn.s.fault(fmt.Errorf("subscription on %s closed: %w", cn.url, err), c)
			if sleep(ctx, backoff) != nil {
				return
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// groupFilter is the REQ following a group from cursor.
func (cn *conn) groupFilter(h [32]byte, cursor uint64) any {
	group := hex.EncodeToString(h[:])
	if cn.s.seq {
		return map[string]any{"#h": []string{group}, "kinds": []int{marmot.KindGroupEvent}, "since_seq": cursor}
	}
	f := nostr.Filter{Kinds: []int{marmot.KindGroupEvent}, Tags: nostr.TagMap{"h": {group}}}
	if cursor > plainOverlap {
		// created_at is a hint only: re-read an overlap (members drop what
		// they already processed by message id).
		since := nostr.Timestamp(cursor - plainOverlap)
		f.Since = &since
	}
	return f
}

// plainOverlap is how far back a plain REQ re-reads after a reconnect, in
// seconds.
const plainOverlap = 60

// read hands a subscription's events to the members until it ends. It
// returns the seq to continue from when a since_seq page ended with "more:",
// and ended when the connection was closed for good. gen is the drop
// count when the subscription was opened.
func (cn *conn) read(sub *marmot.Subscription, gen int) (more uint64, ended bool) {
	inSub := map[string]bool{}
	for {
		select {
		case d := <-sub.Events:
			cn.arrive(d, inSub, gen)
		case <-sub.Done:
			cn.drain(sub, inSub, gen)
			var e *marmot.Error
			if err := sub.Err(); errors.As(err, &e) && strings.HasPrefix(e.Reason, moreReadAfter) {
				if m, perr := strconv.ParseUint(strings.TrimPrefix(e.Reason, moreReadAfter), 10, 64); perr == nil {
					return m, false
				}
			}
			return 0, false
		case <-cn.stop:
			sub.Close()
			return 0, true
		}
	}
}

// drain hands over what a finished subscription still holds.
func (cn *conn) drain(sub *marmot.Subscription, inSub map[string]bool, gen int) {
	for {
		select {
		case d := <-sub.Events:
			cn.arrive(d, inSub, gen)
		default:
			return
		}
	}
}

// arrive records one delivered event and queues it for every member on the
// connection.
func (cn *conn) arrive(d marmot.Delivered, inSub map[string]bool, gen int) {
	now := time.Now()
	id := d.Event.ID
	st := &cn.s.stats
	switch {
	case inSub[id]:
		st.duplicates.Add(1) // the relay sent it twice in one subscription
	default:
		inSub[id] = true
	}
	cn.mu.Lock()
	reread := cn.seen[id]
	cn.seen[id] = true
	switch {
	case gen != cn.dropped:
		// Handed over by a connection this conn closed: what came before
		// it may have been lost, so the cursor stays.
	case cn.s.seq:
		cn.cursor = max(cn.cursor, d.Seq)
	default:
		cn.cursor = max(cn.cursor, uint64(d.Event.CreatedAt))
	}
	members := append([]*member(nil), cn.members...)
	cn.mu.Unlock()
	if reread {
		st.rereads.Add(1)
	}
	if d.Released {
		st.released.Add(1)
	}
	sent, isApp := cn.s.sentAt(id)
	for _, m := range members {
		if !m.receiving() {
			continue
		}
		if isApp && !reread && m != sent.by {
			cn.s.delivery(now.Sub(sent.at))
		}
		m.push(delivery{ev: d.Event, seq: d.Seq, at: now})
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
