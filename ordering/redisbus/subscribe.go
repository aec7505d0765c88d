package redisbus

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Run reads the stream and calls deliver, from this goroutine and in
// stream order, for each authenticated event frame of another instance;
// the Bus's own frames, heartbeats, and frames that fail authentication or
// decoding are not delivered (the last are counted by Rejected). It starts
// after the stream's newest entry, and goes on from the last entry read
// after any failure, so an outage shorter than the stream's retention
// loses nothing. A jump in another instance's frame numbers is counted
// (Missed) and calls the OnLoss hooks, as does the first read after Run
// could not read at first. deliver should be quick: while it runs nothing
// is read. Run returns nil when ctx ends; only one Run may be active per
// Bus.
func (b *Bus) Run(ctx context.Context, deliver func(Message)) error {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("redisbus: Run is already running")
	}
	defer b.running.Store(false)
	b.wg.Add(1)
	defer b.wg.Done()

	r := &reader{bus: b, deliver: deliver, senders: make(map[[idLen]byte]*sender)}
	backoff := minBackoff
	failedFirst := false
	for ctx.Err() == nil {
		err := r.readOnce(ctx)
		if err == nil {
			if !b.subscribed.Swap(true) {
				backoff = minBackoff
				// Redis answers again: the publisher may stop backing off.
				b.outageEnds("subscribe")
				if failedFirst {
					// Frames written before the start position was known
					// were never read.
					failedFirst = false
					b.fireLoss()
				}
			}
			continue
		}
		b.subscribed.Store(false)
		if ctx.Err() != nil {
			break
		}
		if r.last == "" {
			failedFirst = true
		}
		b.outageBegins("subscribe", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, maxBackoff)
	}
	return nil
}

// reader is Run's state: the last stream entry read and each sender's
// last frame number.
type reader struct {
	bus     *Bus
	deliver func(Message)
	last    string // stream id of the last entry read; "" before the first read
	senders map[[idLen]byte]*sender
	pruned  time.Time
}

type sender struct {
	num  uint64
	seen time.Time
}

// readOnce reads the next batch of entries (waiting up to readBlock for
// one) and handles them.
func (r *reader) readOnce(ctx context.Context) error {
	b := r.bus
	if r.last == "" {
		// Start after the newest entry: what was written before this
		// instance started is in storage already.
		last, err := b.client.XRevRangeN(ctx, b.stream, "+", "-", 1).Result()
		if err != nil {
			return err
		}
		r.last = "0-0"
		if len(last) == 1 {
			r.last = last[0].ID
		}
	}
	streams, err := b.client.XRead(ctx, &redis.XReadArgs{
		Streams: []string{b.stream, r.last}, Count: readBatch, Block: readBlock,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil // nothing new within readBlock
	}
	if err != nil {
		return err
	}
	lost := false
	for _, s := range streams {
		for _, m := range s.Messages {
			r.last = m.ID
			raw, _ := m.Values["f"].(string)
			if r.handle([]byte(raw)) {
				lost = true
			}
		}
	}
	if now := time.Now(); now.Sub(r.pruned) > senderTTL {
		r.pruned = now
		for id, s := range r.senders {
			if now.Sub(s.seen) > senderTTL {
				delete(r.senders, id)
			}
		}
	}
	if lost {
		b.fireLoss()
	}
	return nil
}

// handle authenticates and delivers one frame; it reports a jump in its
// sender's frame numbers.
func (r *reader) handle(raw []byte) (lost bool) {
	b := r.bus
	f, err := decode(b.key, raw)
	if err == nil && !f.authed {
		err = errMAC
	}
	if err != nil {
		// Counted, not logged per frame: garbage could be a flood.
		if b.rejected.Add(1) == 1 {
			b.log.Warn("redisbus: unauthenticated or undecodable frame ignored (logged once; see burrow_bus_rejected_total)", "err", err)
		}
		return false
	}
	if f.from == b.id {
		return false
	}
	s := r.senders[f.from]
	if s == nil {
		// A sender first heard of now: what it wrote before this instance
		// started reading is in storage.
		s = &sender{num: f.num - 1}
		r.senders[f.from] = s
	}
	s.seen = time.Now()
	if f.num <= s.num {
		return false // written twice by a retried pipeline
	}
	if gap := f.num - s.num - 1; gap > 0 {
		b.missed.Add(gap)
		lost = true
	}
	s.num = f.num
	if !f.beat {
		r.deliver(f.msg)
	}
	return lost
}
