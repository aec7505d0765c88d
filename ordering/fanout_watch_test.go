package ordering

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/server"
)

// groupKnown reports whether f holds a delivery position for h.
func groupKnown(f *Fanout, h string) bool {
	sh := f.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.groups[h] != nil
}

// TestWatchedGroupKeepsItsPositionWhileIdle (issue 14 item 8): a group a
// subscription watches keeps its delivery position however long it is
// idle, so after the forget interval a remote seq 3 that arrives before
// the local seq 2 still waits for it: the subscriber gets 2, then 3. Once
// nothing watches it, an idle group's position is forgotten.
func TestWatchedGroupKeepsItsPositionWhileIdle(t *testing.T) {
	log, rec := newFakeLog(), &recorder{}
	const idle = 20 * time.Millisecond
	// A gap waits a second before storage is read, so that 3 could only
	// come after 2 by waiting for it, not by a fill that happens to read
	// both.
	f, err := NewFanout(rec, FanoutConfig{Log: log, GapWait: time.Second, IdleAfter: idle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)

	f.Watch(context.Background(), gh)
	f.Broadcast(server.Delivery{Event: log.put(gh, 1), Seq: 1})
	waitFor(t, "seq 1", func() bool { return len(rec.got(gh)) == 1 })
	time.Sleep(10 * idle) // many forget sweeps

	ev2, ev3 := log.put(gh, 2), log.put(gh, 3)
	f.Remote(server.Delivery{Event: ev3, Seq: 3})
	f.Broadcast(server.Delivery{Event: ev2, Seq: 2})
	waitFor(t, "seqs 2 and 3", func() bool { return len(rec.got(gh)) == 3 })
	if got := rec.got(gh); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("delivered %v, want [1 2 3]", got)
	}

	// Two subscriptions watch a second group; it stays known until both
	// have ended, then is forgotten once idle.
	const h2 = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	f.Watch(context.Background(), h2)
	f.Watch(context.Background(), h2)
	f.Unwatch(h2)
	f.Unwatch(gh)
	time.Sleep(10 * idle)
	if !groupKnown(f, h2) {
		t.Fatal("a group one subscription still watches was forgotten")
	}
	waitFor(t, "the unwatched group forgotten", func() bool { return !groupKnown(f, gh) })
	f.Unwatch(h2)
	waitFor(t, "the last watcher gone, the group forgotten", func() bool { return !groupKnown(f, h2) })
}
