package ordering

import (
	"context"
	"errors"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/server"
	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// fakeLog is a group log in memory: seq -> event per group.
type fakeLog struct {
	mu    sync.Mutex
	byH   map[string]map[int64]*nostr.Event
	last  map[string]int64
	fail  bool
	reads int
}

func newFakeLog() *fakeLog {
	return &fakeLog{byH: map[string]map[int64]*nostr.Event{}, last: map[string]int64{}}
}

func (l *fakeLog) put(h string, seq int64) *nostr.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev := &nostr.Event{Kind: 445, ID: strings.Repeat("0", 60) + string(rune('a'+seq%6)) + "000", Tags: nostr.Tags{{"h", h}}, Content: "x"}
	if l.byH[h] == nil {
		l.byH[h] = map[int64]*nostr.Event{}
	}
	l.byH[h][seq] = ev
	l.last[h] = max(l.last[h], seq)
	return ev
}

func (l *fakeLog) GroupLog(_ context.Context, h string, after int64, limit int) iter.Seq2[storage.Sequenced, error] {
	return func(yield func(storage.Sequenced, error) bool) {
		l.mu.Lock()
		l.reads++
		if l.fail {
			l.mu.Unlock()
			yield(storage.Sequenced{}, errors.New("storage down"))
			return
		}
		var seqs []int64
		for s := range l.byH[h] {
			if s > after {
				seqs = append(seqs, s)
			}
		}
		slices.Sort(seqs)
		if limit > 0 && len(seqs) > limit {
			seqs = seqs[:limit]
		}
		items := make([]storage.Sequenced, len(seqs))
		for i, s := range seqs {
			items[i] = storage.Sequenced{Seq: s, Event: l.byH[h][s]}
		}
		l.mu.Unlock()
		for _, it := range items {
			if !yield(it, nil) {
				return
			}
		}
	}
}

func (l *fakeLog) LastSeq(_ context.Context, h string) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[h], nil
}

// recorder is the local fan-out: it records delivered seqs per group.
type recorder struct {
	mu   sync.Mutex
	seqs map[string][]int64
	all  int
}

func (r *recorder) Broadcast(d server.Delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all++
	if d.Seq > 0 {
		if r.seqs == nil {
			r.seqs = map[string][]int64{}
		}
		h := d.Event.Tags.GetFirst([]string{"h", ""})
		r.seqs[(*h)[1]] = append(r.seqs[(*h)[1]], d.Seq)
	}
}

func (r *recorder) got(h string) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seqs[h])
}

// waitFor polls until cond holds or fails the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newTestFanout(t *testing.T, log *fakeLog, rec *recorder, publish func(server.Delivery)) *Fanout {
	t.Helper()
	f, err := NewFanout(rec, FanoutConfig{Log: log, Publish: publish, GapWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

const gh = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestFanoutOrdersWithinAGroup(t *testing.T) {
	tests := []struct {
		name    string
		arrival []int64 // seqs in arrival order (all stored)
		want    []int64
	}{
		{"in order", []int64{1, 2, 3, 4}, []int64{1, 2, 3, 4}},
		{"swapped neighbours", []int64{1, 3, 2, 4}, []int64{1, 2, 3, 4}},
		{"reversed tail", []int64{1, 5, 4, 3, 2}, []int64{1, 2, 3, 4, 5}},
		{"repeats dropped", []int64{1, 2, 2, 1, 3}, []int64{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, rec := newFakeLog(), &recorder{}
			f := newTestFanout(t, log, rec, nil)
			f.Watch(context.Background(), gh) // position 1
			for _, s := range tt.arrival {
				ev := log.put(gh, s)
				f.Broadcast(server.Delivery{Event: ev, Seq: s})
			}
			waitFor(t, "all delivered", func() bool { return len(rec.got(gh)) >= len(tt.want) })
			if got := rec.got(gh); !slices.Equal(got, tt.want) {
				t.Fatalf("delivered %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFanoutFillsGapsFromStorageSkippingHoles(t *testing.T) {
	log, rec := newFakeLog(), &recorder{}
	f := newTestFanout(t, log, rec, nil)
	f.Watch(context.Background(), gh)
	// Seqs 1-3 were committed elsewhere and never arrive; 2 was deleted.
	log.put(gh, 1)
	log.put(gh, 3)
	ev := log.put(gh, 4)
	f.Remote(server.Delivery{Event: ev, Seq: 4})
	waitFor(t, "gap filled", func() bool { return len(rec.got(gh)) == 3 })
	if got := rec.got(gh); !slices.Equal(got, []int64{1, 3, 4}) {
		t.Fatalf("delivered %v, want [1 3 4]", got)
	}
	// A late copy of 3 from the bus is not delivered twice.
	f.Remote(server.Delivery{Event: log.put(gh, 3), Seq: 3})
	ev5 := log.put(gh, 5)
	f.Remote(server.Delivery{Event: ev5, Seq: 5})
	waitFor(t, "5 delivered", func() bool { return len(rec.got(gh)) == 4 })
	if got := rec.got(gh); !slices.Equal(got, []int64{1, 3, 4, 5}) {
		t.Fatalf("delivered %v, want [1 3 4 5]", got)
	}
}

func TestFanoutRetriesAFailedFill(t *testing.T) {
	log, rec := newFakeLog(), &recorder{}
	f := newTestFanout(t, log, rec, nil)
	f.Watch(context.Background(), gh)
	log.put(gh, 1)
	log.mu.Lock()
	log.fail = true
	log.mu.Unlock()
	f.Remote(server.Delivery{Event: log.put(gh, 2), Seq: 2})
	waitFor(t, "a failed read", func() bool { log.mu.Lock(); defer log.mu.Unlock(); return log.reads > 0 })
	if got := rec.got(gh); len(got) != 0 {
		t.Fatalf("delivered %v while the gap is open", got)
	}
	log.mu.Lock()
	log.fail = false
	log.mu.Unlock()
	waitFor(t, "gap filled after the retry", func() bool { return len(rec.got(gh)) == 2 })
	if got := rec.got(gh); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("delivered %v, want [1 2]", got)
	}
}

func TestFanoutWatchStartsAfterTheLastAssignedSeq(t *testing.T) {
	log, rec := newFakeLog(), &recorder{}
	f := newTestFanout(t, log, rec, nil)
	for s := int64(1); s <= 7; s++ {
		log.put(gh, s)
	}
	f.Watch(context.Background(), gh) // 1-7 are the subscriber's stored query
	ev9 := log.put(gh, 9)
	f.Broadcast(server.Delivery{Event: ev9, Seq: 9})
	ev8 := log.put(gh, 8)
	f.Remote(server.Delivery{Event: ev8, Seq: 8})
	waitFor(t, "8 and 9", func() bool { return len(rec.got(gh)) == 2 })
	if got := rec.got(gh); !slices.Equal(got, []int64{8, 9}) {
		t.Fatalf("delivered %v, want [8 9]", got)
	}
}

func TestFanoutPublishesLocalEventsOnlyInSeqOrder(t *testing.T) {
	log, rec := newFakeLog(), &recorder{}
	var mu sync.Mutex
	var published []int64
	other := 0
	f := newTestFanout(t, log, rec, func(d server.Delivery) {
		mu.Lock()
		defer mu.Unlock()
		seq := d.Seq
		if seq == 0 {
			other++
			return
		}
		published = append(published, seq)
	})
	f.Watch(context.Background(), gh)
	e2, e1 := log.put(gh, 2), log.put(gh, 1)
	f.Broadcast(server.Delivery{Event: e2, Seq: 2})
	f.Broadcast(server.Delivery{Event: e1, Seq: 1})
	f.Remote(server.Delivery{Event: log.put(gh, 3), Seq: 3}) // from another instance: never re-published
	f.Broadcast(server.Delivery{Event: &nostr.Event{Kind: 1}})
	f.Remote(server.Delivery{Event: &nostr.Event{Kind: 1}, Seq: 0})
	waitFor(t, "3 delivered", func() bool { return len(rec.got(gh)) == 3 })
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(published, []int64{1, 2}) || other != 1 {
		t.Fatalf("published %v and %d plain events, want [1 2] and 1", published, other)
	}
	if rec.all != 5 {
		t.Fatalf("local deliveries = %d, want 5", rec.all)
	}
}

func TestFanoutResyncCatchesUpAfterAnOutage(t *testing.T) {
	log, rec := newFakeLog(), &recorder{}
	f := newTestFanout(t, log, rec, nil)
	f.Watch(context.Background(), gh)
	// The bus was down while another instance stored 1-3.
	for s := int64(1); s <= 3; s++ {
		log.put(gh, s)
	}
	f.Resync()
	waitFor(t, "resync", func() bool { return len(rec.got(gh)) == 3 })
	if got := rec.got(gh); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("delivered %v, want [1 2 3]", got)
	}
}

func TestFanoutManyGroupsConcurrently(t *testing.T) {
	log, rec := newFakeLog(), &recorder{}
	f := newTestFanout(t, log, rec, nil)
	groups := []string{gh, strings.Repeat("b", 64), strings.Repeat("c", 64), strings.Repeat("d", 64)}
	const per = 200
	for _, h := range groups {
		f.Watch(context.Background(), h)
	}
	var wg sync.WaitGroup
	evs := map[string][]*nostr.Event{}
	for _, h := range groups {
		evs[h] = []*nostr.Event{nil}
		for s := int64(1); s <= per; s++ {
			evs[h] = append(evs[h], log.put(h, s))
		}
	}
	for _, h := range groups {
		// Two "connections" per group deliver interleaved halves.
		for start := int64(1); start <= 2; start++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for s := start; s <= per; s += 2 {
					f.Broadcast(server.Delivery{Event: evs[h][s], Seq: s})
				}
			}()
		}
	}
	wg.Wait()
	for _, h := range groups {
		waitFor(t, "group delivered", func() bool { return len(rec.got(h)) == per })
		got := rec.got(h)
		for i, s := range got {
			if s != int64(i+1) {
				t.Fatalf("group %s: position %d got seq %d", h[:4], i, s)
			}
		}
	}
}

// An event committed just before this instance began following its group
// (first sight, or Watch) arrives late: it is delivered once, not lost;
// repeats of delivered seqs are still dropped.
func TestFanoutDeliversEventsBelowItsStartingPointLate(t *testing.T) {
	log, rec := newFakeLog(), &recorder{}
	f := newTestFanout(t, log, rec, nil)
	for s := int64(1); s <= 3; s++ {
		log.put(gh, s)
	}
	f.Remote(server.Delivery{Event: log.put(gh, 5), Seq: 5}) // first sight at 5
	f.Remote(server.Delivery{Event: log.byH[gh][3], Seq: 3}) // in flight from another instance
	ev4 := log.put(gh, 4)
	f.Remote(server.Delivery{Event: ev4, Seq: 4})
	f.Remote(server.Delivery{Event: log.put(gh, 6), Seq: 6})
	f.Remote(server.Delivery{Event: ev4, Seq: 4}) // a repeat
	waitFor(t, "deliveries", func() bool { return len(rec.got(gh)) >= 4 })
	time.Sleep(50 * time.Millisecond)
	if got := rec.got(gh); !slices.Equal(got, []int64{5, 3, 4, 6}) {
		t.Fatalf("delivered %v, want [5 3 4 6]", got)
	}
}
