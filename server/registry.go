package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// registry is the locked set of live subscriptions of every connection and
// the index matching events to them. Broadcast only queues: one dispatcher
// goroutine matches, encodes and hands events to subscriptions in the order
// they were broadcast, so a publisher's next OK never waits for fan-out.
type registry struct {
	srv *Server

	mu  sync.RWMutex
	idx *filterIndex
	// subs counts the subscriptions in idx (changed under mu). Broadcast
	// reads it without the lock: with none, there is nothing to hand the
	// dispatcher.
	subs atomic.Int64

	qmu    sync.Mutex
	queue  []Delivery
	qbytes int
	room   freedSignal   // the dispatcher took the queue
	wake   chan struct{} // capacity 1
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	matched []*compiledFilter // dispatcher scratch
}

// KeyPackage kinds (Marmot), whose deletion the relay promises to honour
// in live delivery too.
const (
	kindKeyPackage       = 30443
	kindLegacyKeyPackage = 443
)

// dispatchQueueBytes bounds the events waiting for the dispatcher (counted
// by eventSize); a broadcaster waits for room past it.
const dispatchQueueBytes = 64 << 20

func newRegistry(s *Server) *registry {
	r := &registry{
		srv:  s,
		idx:  newFilterIndex(),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go r.dispatchLoop()
	return r
}

// close stops the dispatcher; later broadcasts are dropped.
func (r *registry) close() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

func (r *registry) add(sub *subscription) {
	r.mu.Lock()
	for _, cf := range sub.compiled {
		r.idx.add(cf)
	}
	if !sub.registered {
		sub.registered = true
		r.subs.Add(1)
	}
	r.mu.Unlock()
}

func (r *registry) remove(sub *subscription) {
	r.mu.Lock()
	for _, cf := range sub.compiled {
		r.idx.remove(cf)
	}
	if sub.registered {
		sub.registered = false
		r.subs.Add(-1)
	}
	r.mu.Unlock()
	sub.close()
}

// Broadcast queues d for every matching subscription. It waits only while
// the dispatcher is far behind (dispatchQueueBytes), never on a subscriber.
// A KeyPackage is first looked up in storage: one deleted since it was
// stored (by a replacement or kind 5 racing its broadcast, on any instance)
// is not delivered.
//
// With no subscription open, Broadcast returns at once: the event would
// match nothing, and a subscription opened after this check registers
// before its stored query, which then finds the event (committed before its
// broadcast), so it is not missed. Each event then costs no hand-off to the
// dispatcher (nor, for a KeyPackage, a storage lookup).
func (r *registry) Broadcast(d Delivery) {
	if r.subs.Load() == 0 {
		return
	}
	if k := d.Event.Kind; (k == kindKeyPackage || k == kindLegacyKeyPackage) && !r.srv.stillStored(d.Event.ID) {
		return
	}
	n := eventSize(d.Event)
	r.srv.tracker.hold(d.Ticket)
	for {
		r.qmu.Lock()
		if r.qbytes == 0 || r.qbytes+n <= dispatchQueueBytes {
			r.queue = append(r.queue, d)
			r.qbytes += n
			r.qmu.Unlock()
			select {
			case r.wake <- struct{}{}:
			default:
			}
			return
		}
		room := r.room.wait()
		r.qmu.Unlock()
		select {
		case <-room:
		case <-r.stop:
			r.srv.tracker.end(d.Ticket)
			return
		}
	}
}

func (r *registry) dispatchLoop() {
	defer close(r.done)
	var batch []Delivery
	for {
		r.qmu.Lock()
		batch = append(batch[:0], r.queue...)
		clear(r.queue)
		r.queue = r.queue[:0]
		r.qbytes = 0
		r.room.notify()
		r.qmu.Unlock()
		for _, d := range batch {
			r.dispatch(d)
			r.srv.tracker.end(d.Ticket)
		}
		clear(batch)
		select {
		case <-r.wake:
		case <-r.stop:
			r.qmu.Lock()
			for _, d := range r.queue {
				r.srv.tracker.end(d.Ticket)
			}
			r.queue = nil
			r.qmu.Unlock()
			return
		}
	}
}

// dispatch hands d to every subscription it matches, encoding the event
// once for all of them.
func (r *registry) dispatch(d Delivery) {
	ev := d.Event
	now := time.Now()
	id := idKey(ev.ID)
	if deleted, _ := r.srv.deleted.check(id, now, now); deleted {
		return
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.matched = r.idx.match(ev, r.matched[:0])
	gen := r.idx.gen
	var body []byte
	for _, cf := range r.matched {
		sub := cf.sub
		if sub.dispatched == gen {
			continue // another filter of the same subscription matched
		}
		sub.dispatched = gen
		if body == nil {
			body = marshalEvent(ev)
		}
		sub.deliver(d, body, id, now)
	}
	clear(r.matched)
}

// stillStored reports whether the event id is still stored (false when it
// cannot tell: a KeyPackage not delivered live is still found by a query,
// a deleted one delivered is a broken promise).
func (s *Server) stillStored(id string) bool {
	ctx, cancel := context.WithTimeout(s.hardCtx, 5*time.Second)
	defer cancel()
	for ev, err := range s.store.Query(ctx, nostr.Filter{IDs: []string{id}, Limit: 1}) {
		if err != nil {
			s.log.Warn("checking a KeyPackage before live delivery", "err", err)
			return false
		}
		return ev != nil
	}
	return false
}

// eventSize approximates the memory an event holds, for byte bounds.
func eventSize(ev *nostr.Event) int {
	n := 256 + len(ev.Content)
	for _, tag := range ev.Tags {
		n += 24
		for _, v := range tag {
			n += 16 + len(v)
		}
	}
	return n
}
