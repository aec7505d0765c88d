package redisbus

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// publishLoop writes queued frames to the stream until Close, in order. A
// batch that could not be written is written again, with backoff, until
// Redis takes it: frames wait in the queue meanwhile (Publish drops what
// does not fit). Every beatEvery it queues a heartbeat if frames were
// numbered since the last one.
func (b *Bus) publishLoop() {
	defer b.wg.Done()
	defer close(b.pubDone)
	defer b.dropQueued()
	batch := make([][]byte, 0, maxBatch)
	beat := time.NewTicker(beatEvery)
	defer beat.Stop()
	var lastBeat uint64
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-beat.C:
			lastBeat = b.beat(lastBeat)
			continue
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
		backoff := minBackoff
		for {
			err := b.send(batch)
			if err == nil {
				break
			}
			if b.ctx.Err() != nil {
				b.dropped.Add(uint64(len(batch)))
				return
			}
			b.pubDown.Store(true)
			b.outageBegins("publish", err)
			t := time.NewTimer(backoff)
			select {
			case <-b.ctx.Done():
				t.Stop()
				b.dropped.Add(uint64(len(batch)))
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxBackoff)
		}
		if b.pubDown.CompareAndSwap(true, false) {
			b.outageEnds("publish")
		}
	}
}

// send appends batch to the stream in one pipelined round trip, trimming
// entries older than the retention. A retry after a failure may write
// some frames twice; receivers skip numbers they have seen.
func (b *Bus) send(batch [][]byte) error {
	ctx, cancel := context.WithTimeout(b.ctx, opTimeout)
	defer cancel()
	minID := strconv.FormatInt(time.Now().Add(-b.retention).UnixMilli(), 10) + "-0"
	pipe := b.client.Pipeline()
	for _, f := range batch {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: b.stream, MinID: minID, Approx: true, Values: []any{"f", f}})
	}
	_, err := pipe.Exec(ctx)
	return err
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
