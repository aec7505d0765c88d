package server

import (
	"context"
	"errors"
	"sync"
)

// errConnClosed is returned to callers waiting on a closed connection.
var errConnClosed = errors.New("connection closed")

// outbox is a connection's bounded outbound queue, drained by its writer.
//
// Two kinds of message enter it. Live events (pushLive) never wait: when the
// queue is full the reader is too slow and the connection is closed, so a
// stalled subscriber costs publishers nothing. Answers to the connection's
// own requests (pushWait) wait while the queue is at least half full, so a
// large stored result slows only the client that asked for it and always
// leaves the other half for live events.
type outbox struct {
	limit int

	mu      sync.Mutex
	items   [][]byte
	closing bool          // no more messages; writer flushes then stops
	space   chan struct{} // closed and replaced when the writer takes items
	wake    chan struct{} // capacity 1: tells the writer there is work
	dead    chan struct{} // closed when the connection is gone
}

func newOutbox(limit int, dead chan struct{}) *outbox {
	return &outbox{
		limit: limit,
		space: make(chan struct{}),
		wake:  make(chan struct{}, 1),
		dead:  dead,
	}
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// pushLive queues msg without waiting. It reports false when the queue is
// full (the caller closes the connection); a message for a closing
// connection is dropped and reported true.
func (o *outbox) pushLive(msg []byte) bool {
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		return true
	}
	if len(o.items) >= o.limit {
		o.mu.Unlock()
		return false
	}
	o.items = append(o.items, msg)
	o.mu.Unlock()
	o.signal()
	return true
}

// pushWait queues msg, waiting while the queue is half full.
func (o *outbox) pushWait(ctx context.Context, msg []byte) error {
	for {
		o.mu.Lock()
		if o.closing {
			o.mu.Unlock()
			return errConnClosed
		}
		if len(o.items) < o.limit/2 {
			o.items = append(o.items, msg)
			o.mu.Unlock()
			o.signal()
			return nil
		}
		space := o.space
		o.mu.Unlock()
		select {
		case <-space:
		case <-o.dead:
			return errConnClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take removes every queued message. done reports that the queue is closing
// and now empty.
func (o *outbox) take(buf [][]byte) (msgs [][]byte, done bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	msgs = append(buf[:0], o.items...)
	clear(o.items)
	o.items = o.items[:0]
	if len(msgs) > 0 {
		close(o.space)
		o.space = make(chan struct{})
	}
	return msgs, o.closing && len(msgs) == 0
}

// close stops accepting messages; the writer flushes what is queued.
func (o *outbox) close() {
	o.mu.Lock()
	o.closing = true
	o.mu.Unlock()
	o.signal()
}
