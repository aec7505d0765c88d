package storetest

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// CommitLog records what a store reports to its Config.OnCommit (both
// backends have one), for tests of which writes shared a commit.
type CommitLog struct {
	mu     sync.Mutex
	writes []int
	took   []time.Duration
}

// Add is the OnCommit callback.
func (l *CommitLog) Add(writes int, took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes, l.took = append(l.writes, writes), append(l.took, took)
}

// Sizes returns the sizes of the commits reported so far, in order,
// failing t for any reported as taking no time.
func (l *CommitLog) Sizes(t testing.TB) []int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, d := range l.took {
		if d <= 0 {
			t.Errorf("commit %d of %d writes reported as taking %v", i, l.writes[i], d)
		}
	}
	return slices.Clone(l.writes)
}
