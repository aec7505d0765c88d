package redisbus

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// errNoPong means the connection stayed silent through a ping: treated as
// lost, since a half-open TCP connection would otherwise hang forever.
var errNoPong = errors.New("redisbus: no answer to ping")

// Run subscribes to the channel and calls deliver, from this goroutine and
// in the order received, for each message from another instance; the Bus's
// own messages and undecodable ones are skipped. deliver should be quick:
// while it runs nothing is read, and Redis disconnects a subscriber that
// falls far behind (which Run then treats as an outage). When the
// subscription fails Run retries with backoff and calls the OnReconnect
// hooks once it is back. Run returns nil when ctx ends; only one Run may be
// active per Bus.
func (b *Bus) Run(ctx context.Context, deliver func(Message)) error {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("redisbus: Run is already running")
	}
	defer b.running.Store(false)
	b.wg.Add(1)
	defer b.wg.Done()

	backoff := minBackoff
	lost := false // a subscription failed since Run began
	for ctx.Err() == nil {
		up := func() {
			b.subscribed.Store(true)
			backoff = minBackoff
			// Redis answers again: the publisher may stop backing off.
			b.pubDown.Store(false)
			select {
			case b.wake <- struct{}{}:
			default:
			}
			b.outageEnds("subscribe")
			if lost {
				b.fireReconnect()
			}
		}
		err := b.subscribeOnce(ctx, deliver, up)
		b.subscribed.Store(false)
		if ctx.Err() != nil {
			break
		}
		lost = true
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

// subscribeOnce holds one subscription until it fails or ctx ends, calling
// up when Redis confirms it.
func (b *Bus) subscribeOnce(ctx context.Context, deliver func(Message), up func()) error {
	ps := b.client.Subscribe(ctx)
	defer ps.Close()
	// Closing the PubSub is what interrupts a blocked read when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()

	sctx, cancel := context.WithTimeout(ctx, opTimeout)
	err := ps.Subscribe(sctx, b.channel)
	cancel()
	if err != nil {
		return err
	}
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, healthEvery)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return err
			}
			if pinged {
				return errNoPong
			}
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			pinged = true
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == b.channel {
				up()
			}
		case *redis.Message:
			from, out, err := decode([]byte(m.Payload))
			if err != nil {
				// Counted, not logged per message: garbage could be a flood.
				if b.garbage.Add(1) == 1 {
					b.log.Warn("redisbus: undecodable message on the channel ignored (logged once)", "err", err)
				}
				continue
			}
			if from == b.id {
				continue
			}
			deliver(out)
		}
	}
}

func (b *Bus) fireReconnect() {
	b.hookMu.Lock()
	hooks := append([]func(){}, b.hooks...)
	b.hookMu.Unlock()
	for _, f := range hooks {
		f()
	}
}
