package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// errConnClosed is returned to callers waiting on a closed connection.
var errConnClosed = errors.New("connection closed")

// outMsg is one queued message: prefix, body and suffix, written as one
// websocket message. An event's body is its encoded JSON, shared by every
// subscription it is queued for, so a thousand subscribers of one event
// hold one copy of it, not a thousand.
type outMsg struct {
	prefix, body, suffix []byte
	// event is set for an EVENT message: id is the event's, and at the time
	// from which a deletion of it is known to the relay's deleted set (when
	// it was read from storage, or checked before delivery). The writer
	// drops it if it was deleted since.
	event bool
	id    [32]byte
	at    time.Time
}

func plainMsg(b []byte) outMsg { return outMsg{body: b} }

func (m *outMsg) size() int { return len(m.prefix) + len(m.body) + len(m.suffix) }

// byteBudget bounds the bytes queued by every connection together. Bytes
// are counted per queued message, as if each held its own copy, so the
// memory the queues really hold is at most the count.
type byteBudget struct {
	max  int64
	used atomic.Int64
}

// take counts n bytes if they fit; force counts them anyway.
func (b *byteBudget) take(n int, force bool) bool {
	if b.used.Add(int64(n)) > b.max && !force {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

func (b *byteBudget) give(n int) { b.used.Add(-int64(n)) }

// outbox is a connection's outbound queue, bounded in messages and bytes,
// drained by its writer.
//
// Two kinds of message enter it. Live events (pushLive) never wait: when
// the queue is over a bound the reader is too slow and the connection is
// closed, so a stalled subscriber costs publishers nothing. Answers to the
// connection's own requests (pushWait) wait while the queue is at least half
// full (in messages or bytes), so a large stored result slows only the
// client that asked for it and always leaves the other half for live
// events. A message into an empty queue is always taken, so one message
// larger than a bound still goes out.
type outbox struct {
	limit      int // messages
	limitBytes int
	total      *byteBudget

	mu      sync.Mutex
	items   []outMsg
	bytes   int           // queued plus taken by the writer and not yet written
	closing bool          // no more messages; writer flushes then stops
	space   freedSignal   // the writer freed room
	wake    chan struct{} // capacity 1: tells the writer there is work
	dead    chan struct{} // closed when the connection is gone
}

func newOutbox(limit, limitBytes int, total *byteBudget, dead chan struct{}) *outbox {
	return &outbox{
		limit:      limit,
		limitBytes: limitBytes,
		total:      total,
		wake:       make(chan struct{}, 1),
		dead:       dead,
	}
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// pushLive queues m without waiting. It reports false when the queue is
// over a bound (the caller closes the connection); a message for a closing
// connection is dropped and reported true.
func (o *outbox) pushLive(m outMsg) bool {
	n := m.size()
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		return true
	}
	empty := o.bytes == 0
	if len(o.items) >= o.limit || !empty && o.bytes+n > o.limitBytes || !o.total.take(n, empty) {
		o.mu.Unlock()
		return false
	}
	o.items = append(o.items, m)
	o.bytes += n
	o.mu.Unlock()
	o.signal()
	return true
}

// totalRetry is how often a pushWait blocked only by the process-wide
// budget looks again (room there is freed by other connections' writers,
// which do not signal this one).
const totalRetry = 20 * time.Millisecond

// pushWait queues m, waiting while the queue is half full.
func (o *outbox) pushWait(ctx context.Context, m outMsg) error {
	n := m.size()
	for {
		o.mu.Lock()
		if o.closing {
			o.mu.Unlock()
			return errConnClosed
		}
		empty := o.bytes == 0
		mine := empty || len(o.items) < o.limit/2 && o.bytes+n <= o.limitBytes/2
		if mine && o.total.take(n, empty) {
			o.items = append(o.items, m)
			o.bytes += n
			o.mu.Unlock()
			o.signal()
			return nil
		}
		space := o.space.wait()
		o.mu.Unlock()
		if err := o.waitRoom(ctx, space, mine); err != nil {
			return err
		}
	}
}

// waitRoom waits for the writer to free room (space), or, when only the
// process-wide budget is short (totalOnly), for a while.
func (o *outbox) waitRoom(ctx context.Context, space <-chan struct{}, totalOnly bool) error {
	var retry <-chan time.Time
	if totalOnly {
		t := time.NewTimer(totalRetry)
		defer t.Stop()
		retry = t.C
	}
	select {
	case <-space:
	case <-retry:
	case <-o.dead:
		return errConnClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// take hands every queued message to the writer, which reports them with
// written once sent. done reports that the queue is closing and empty.
func (o *outbox) take(buf []outMsg) (msgs []outMsg, done bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	msgs = append(buf[:0], o.items...)
	clear(o.items)
	o.items = o.items[:0]
	if len(msgs) > 0 {
		o.space.notify()
	}
	return msgs, o.closing && len(msgs) == 0
}

// written releases the bytes of messages the writer has sent (or dropped).
func (o *outbox) written(msgs []outMsg) {
	n := 0
	for i := range msgs {
		n += msgs[i].size()
	}
	o.mu.Lock()
	o.bytes -= n
	o.space.notify()
	o.mu.Unlock()
	o.total.give(n)
}

// close stops accepting messages; the writer flushes what is queued.
func (o *outbox) close() {
	o.mu.Lock()
	o.closing = true
	o.mu.Unlock()
	o.signal()
}

// discard drops whatever is still queued or unwritten when the writer stops,
// giving its bytes back to the process-wide budget.
func (o *outbox) discard() {
	o.mu.Lock()
	n := o.bytes
	o.closing = true
	o.items = nil
	o.bytes = 0
	o.mu.Unlock()
	o.total.give(n)
}
