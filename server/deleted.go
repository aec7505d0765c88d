package server

import (
	"sync"
	"time"

	"github.com/burrow-relay/burrow/storage"
)

// deletedSet remembers the events deleted recently, in the order this
// process learned of them, so that a copy of a deleted event already on its
// way to a subscriber (queued for fan-out, or in an outbound queue) is
// dropped instead of written (DESIGN.md "Deletion": once the triggering
// event has its OK true, no live subscription receives the old event).
//
// A queued event carries the time from which its deletion would be in the
// set (outMsg.at). The set keeps ids for retention and at most maxIDs of
// them; a message older than what the set still covers cannot be checked,
// and the writer then closes the connection rather than risk a deleted
// event (a reader that far behind is dead anyway).
type deletedSet struct {
	retention time.Duration
	maxIDs    int

	mu      sync.RWMutex
	ids     map[[32]byte]struct{}
	order   []deletedEntry // oldest first
	horizon time.Time      // ids deleted before this may be forgotten
}

type deletedEntry struct {
	id [32]byte
	at time.Time
}

const (
	// deletedRetention is how long a deletion is remembered, hence how long
	// a message may wait in an outbound queue before its connection is
	// closed.
	deletedRetention = 10 * time.Minute
	// deletedMax bounds the set (about 100 bytes an id).
	deletedMax = 1 << 20
)

func newDeletedSet(retention time.Duration, maxIDs int) *deletedSet {
	return &deletedSet{retention: retention, maxIDs: maxIDs, ids: make(map[[32]byte]struct{})}
}

// add records deletions learned now.
func (d *deletedSet) add(ids []string, now time.Time) {
	if len(ids) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		k := idKey(id)
		if _, ok := d.ids[k]; ok {
			continue
		}
		d.ids[k] = struct{}{}
		d.order = append(d.order, deletedEntry{id: k, at: now})
	}
	// Forget what is past the retention, then the oldest over the cap.
	cut := 0
	for cut < len(d.order) && (now.Sub(d.order[cut].at) > d.retention || len(d.order)-cut > d.maxIDs) {
		delete(d.ids, d.order[cut].id)
		if d.order[cut].at.After(d.horizon) {
			d.horizon = d.order[cut].at
		}
		cut++
	}
	if cut > 0 {
		d.order = append(d.order[:0], d.order[cut:]...)
	}
}

func (d *deletedSet) addDeletions(ds []storage.Deletion, now time.Time) {
	if len(ds) == 0 {
		return
	}
	ids := make([]string, len(ds))
	for i, del := range ds {
		ids[i] = del.ID
	}
	d.add(ids, now)
}

// check reports whether id was deleted, and whether the set still covers
// deletions since at (when it does not, the answer cannot be trusted).
func (d *deletedSet) check(id [32]byte, at, now time.Time) (deleted, covered bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	_, deleted = d.ids[id]
	covered = now.Sub(at) < d.retention && !at.Before(d.horizon)
	return deleted, covered
}
