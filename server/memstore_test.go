package server

import (
	"cmp"
	"context"
	"iter"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip40"
)

// memStore is a small in-memory storage.Store for engine tests: ids,
// tombstones, NIP-40, kind 445 seq. It is not a backend (no replaceable or
// NIP-09 rules); integration tests that need those use storage/sqlite.
type memStore struct {
	mu         sync.Mutex
	events     map[string]*nostr.Event
	seqs       map[string]int64 // event id -> seq
	groupSeq   map[string]int64
	tombstones map[string]bool
}

var _ storage.Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{events: map[string]*nostr.Event{}, seqs: map[string]int64{},
		groupSeq: map[string]int64{}, tombstones: map[string]bool{}}
}

func (m *memStore) Save(_ context.Context, ev *nostr.Event) (storage.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.events[ev.ID]; ok {
		return storage.Result{Seq: m.seqs[ev.ID]}, storage.ErrDuplicate
	}
	if m.tombstones[ev.ID] {
		return storage.Result{}, storage.ErrDeleted
	}
	if exp := nip40.GetExpiration(ev.Tags); exp != -1 && exp.Time().Before(time.Now().Add(time.Second)) {
		return storage.Result{}, storage.ErrExpired
	}
	var res storage.Result
	if ev.Kind == 445 {
		if h := ev.Tags.Find("h"); h != nil {
			m.groupSeq[h[1]]++
			res.Seq = m.groupSeq[h[1]]
			m.seqs[ev.ID] = res.Seq
		}
	}
	cp := *ev
	m.events[ev.ID] = &cp
	return res, nil
}

func (m *memStore) Delete(_ context.Context, ids []string, reason storage.Reason) ([]storage.Deletion, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []storage.Deletion
	for _, id := range ids {
		if ev, ok := m.events[id]; ok {
			out = append(out, storage.Deletion{ID: id, Kind: ev.Kind, PubKey: ev.PubKey, Reason: reason})
			delete(m.events, id)
		}
		m.tombstones[id] = true
	}
	return out, nil
}

func (m *memStore) matching(f nostr.Filter) []*nostr.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*nostr.Event
	for _, ev := range m.events {
		if f.Matches(ev) {
			cp := *ev
			out = append(out, &cp)
		}
	}
	slices.SortFunc(out, func(a, b *nostr.Event) int {
		if c := cmp.Compare(b.CreatedAt, a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

func (m *memStore) Query(_ context.Context, f nostr.Filter) iter.Seq2[*nostr.Event, error] {
	return func(yield func(*nostr.Event, error) bool) {
		if f.LimitZero {
			return
		}
		evs := m.matching(f)
		if f.Limit > 0 && len(evs) > f.Limit {
			evs = evs[:f.Limit]
		}
		for _, ev := range evs {
			if !yield(ev, nil) {
				return
			}
		}
	}
}

func (m *memStore) Count(_ context.Context, f nostr.Filter) (int64, error) {
	return int64(len(m.matching(f))), nil
}

func (m *memStore) DeleteExpired(context.Context, time.Time) ([]storage.Deletion, error) {
	return nil, nil
}

func (m *memStore) Ping(context.Context) error { return nil }
func (m *memStore) Close() error               { return nil }

func (m *memStore) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.events)
}

// seqString is "seq:<n>".
func seqString(n int) string { return "seq:" + strconv.Itoa(n) }
