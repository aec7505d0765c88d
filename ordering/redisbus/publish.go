package redisbus

import (
	"context"
	"time"
)

// publishLoop sends queued frames until Close. After a failed send it waits
// with backoff, dropping what arrives meanwhile: a live message that waited
// out an outage is stale, since receivers refill from storage anyway, and
// dropping keeps memory bounded and the counter honest.
func (b *Bus) publishLoop() {
	defer b.wg.Done()
	defer close(b.pubDone)
	defer b.dropQueued()
	batch := make([][]byte, 0, maxBatch)
	backoff := minBackoff
	for {
		select {
		case <-b.ctx.Done():
			return
		case f := <-b.queue:
			b.queuedBytes.Add(-int64(len(f)))
			batch = append(batch[:0], f)
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case f := <-b.queue:
				b.queuedBytes.Add(-int64(len(f)))
				batch = append(batch, f)
			default:
				break fill
			}
		}
		if err := b.send(batch); err != nil {
			b.dropped.Add(uint64(len(batch)))
			if b.ctx.Err() != nil {
				return
			}
			b.pubDown.Store(true)
			b.outageBegins("publish", err)
			if !b.waitDropping(backoff) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		if b.pubDown.CompareAndSwap(true, false) {
			b.outageEnds("publish")
		}
	}
}

// send publishes batch, pipelined when it holds more than one frame.
func (b *Bus) send(batch [][]byte) error {
	ctx, cancel := context.WithTimeout(b.ctx, opTimeout)
	defer cancel()
	if len(batch) == 1 {
		return b.client.Publish(ctx, b.channel, batch[0]).Err()
	}
	pipe := b.client.Pipeline()
	for _, f := range batch {
		pipe.Publish(ctx, b.channel, f)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// waitDropping waits d, or until the subscriber sees Redis again, dropping
// queued frames; false means Close came.
func (b *Bus) waitDropping(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return false
		case <-t.C:
			return true
		case <-b.wake:
			return true
		case f := <-b.queue:
			b.queuedBytes.Add(-int64(len(f)))
			b.dropped.Add(1)
		}
	}
}

// dropQueued counts what Close left in the queue.
func (b *Bus) dropQueued() {
	for {
		select {
		case f := <-b.queue:
			b.queuedBytes.Add(-int64(len(f)))
			b.dropped.Add(1)
		default:
			return
		}
	}
}

// outageBegins logs the first failure of an outage, whichever direction
// sees it first. The error text names the connection problem, never event
// data.
func (b *Bus) outageBegins(side string, err error) {
	if b.outage.CompareAndSwap(false, true) {
		b.log.Warn("redisbus: Redis unreachable; cross-instance live delivery paused, receivers will refill from storage",
			"side", side, "err", err)
	}
}

// outageEnds logs the end of an outage once.
func (b *Bus) outageEnds(side string) {
	if b.outage.CompareAndSwap(true, false) {
		b.log.Info("redisbus: Redis reachable again", "side", side)
	}
}
