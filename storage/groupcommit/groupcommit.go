// Package groupcommit forms the batches a store's writer commits together:
// one transaction and one flush for every write in a batch, each caller
// answered after the commit. It owns the batching rule both backends share:
// take every write already queued, and, while a batch is smaller than recent
// ones, wait briefly for the writers still on their way.
package groupcommit

import (
	"runtime"
	"time"
)

// Gatherer takes batches off one writer's queue. It is used by that writer
// goroutine only.
type Gatherer[T any] struct {
	queue  <-chan T
	max    int
	linger time.Duration
	timer  *time.Timer
	target int // the batch size recent load has shown (see NextTarget)
}

// New returns a Gatherer of batches of at most maxBatch writes from queue, which
// waits up to linger for a batch to reach the size of recent ones.
func New[T any](queue <-chan T, maxBatch int, linger time.Duration) *Gatherer[T] {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &Gatherer[T]{queue: queue, max: maxBatch, linger: linger, timer: t, target: 1}
}

// Next waits for a write and returns it with every write queued behind it,
// appended to buf[:0]. ok is false once the queue is closed and empty.
func (g *Gatherer[T]) Next(buf []T) (batch []T, ok bool) {
	first, ok := <-g.queue
	if !ok {
		return buf[:0], false
	}
	batch = append(buf[:0], first)
	// Callers answered by the previous commit are usually runnable but not
	// yet running; yielding once lets them queue their next write into this
	// batch, which shares one commit.
	runtime.Gosched()
	open := g.drain(&batch)
	// A batch smaller than recent ones means writers are still on their way
	// (verifying a signature, say). Waiting briefly for them costs no CPU
	// and spreads one commit over more writes. A lone writer never waits,
	// nor do writers that all fit in one batch.
	if open && len(batch) < g.target {
		g.timer.Reset(g.linger)
	wait:
		for len(batch) < g.target {
			select {
			case next, ok := <-g.queue:
				if !ok {
					break wait
				}
				batch = append(batch, next)
				if !g.drain(&batch) {
					break wait
				}
			case <-g.timer.C:
				break wait
			}
		}
		g.timer.Stop()
	}
	g.target = NextTarget(g.target, len(batch), g.max)
	return batch, true
}

// drain moves the writes already queued into batch, up to the maximum. It
// reports false once the queue is closed.
func (g *Gatherer[T]) drain(batch *[]T) (open bool) {
	for len(*batch) < g.max {
		select {
		case next, ok := <-g.queue:
			if !ok {
				return false
			}
			*batch = append(*batch, next)
		default:
			return true
		}
	}
	return true
}

// NextTarget is the batch size to wait for after committing a batch of size
// n: it rises to any larger batch and halves (not below n) when a batch falls
// short, so after a burst the writes of a few callers do not keep waiting for
// a batch that will not fill.
func NextTarget(target, n, maxBatch int) int {
	return min(max(n, target/2, 1), maxBatch)
}
