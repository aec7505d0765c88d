package groupcommit

import (
	"slices"
	"testing"
	"time"
)

func TestNextTarget(t *testing.T) {
	for _, tt := range []struct {
		target, n, maxBatch, want int
	}{
		{1, 1, 256, 1},     // a lone writer never waits
		{1, 5, 256, 5},     // a larger batch raises the target
		{6, 6, 256, 6},     // a full batch keeps it
		{6, 4, 256, 4},     // a short batch halves it, not below its size
		{256, 1, 256, 128}, // after a burst it falls quickly
		{3, 1, 256, 1},
		{8, 300, 256, 256}, // never above the maximum
	} {
		if got := NextTarget(tt.target, tt.n, tt.maxBatch); got != tt.want {
			t.Errorf("NextTarget(%d, %d, %d) = %d, want %d", tt.target, tt.n, tt.maxBatch, got, tt.want)
		}
	}
}

// TestNextWaitsForRecentSize: a batch takes what is queued up to the
// maximum; the next, smaller one waits for writes still to come until it is
// as large (the linger is an hour, so only their arrival can end the wait).
func TestNextWaitsForRecentSize(t *testing.T) {
	q := make(chan int, 16)
	g := New(q, 3, time.Hour)
	for i := range 4 {
		q <- i
	}
	batch, ok := g.Next(nil)
	if !ok || !slices.Equal(batch, []int{0, 1, 2}) {
		t.Fatalf("first batch = %v, %v; want [0 1 2], the maximum", batch, ok)
	}
	go func() {
		q <- 4
		q <- 5
	}()
	if batch, ok = g.Next(batch); !ok || !slices.Equal(batch, []int{3, 4, 5}) {
		t.Fatalf("second batch = %v, %v; want [3 4 5], waited for", batch, ok)
	}
}

// TestNextLonelyWrites: a batch short of recent ones ends when the linger
// runs out, with what it has; after that the target has fallen, and a lone
// write that follows is a batch of its own.
func TestNextLonelyWrites(t *testing.T) {
	q := make(chan int, 16)
	g := New(q, 8, time.Millisecond)
	for i := range 4 {
		q <- i
	}
	batch, _ := g.Next(nil) // target 4
	q <- 4
	if batch, _ = g.Next(batch); !slices.Equal(batch, []int{4}) {
		t.Fatalf("batch after the linger = %v; want [4]", batch)
	}
	q <- 5
	if batch, _ = g.Next(batch); !slices.Equal(batch, []int{5}) {
		t.Fatalf("lone batch = %v; want [5]", batch)
	}
}

// TestNextClosed: writes queued before the queue closed are still batched;
// then Next reports the end.
func TestNextClosed(t *testing.T) {
	q := make(chan int, 4)
	g := New(q, 8, time.Hour)
	q <- 1
	q <- 2
	close(q)
	batch, ok := g.Next(nil)
	if !ok || !slices.Equal(batch, []int{1, 2}) {
		t.Fatalf("batch = %v, %v; want [1 2]", batch, ok)
	}
	if batch, ok = g.Next(batch); ok || len(batch) != 0 {
		t.Fatalf("after close: %v, %v; want an empty batch and false", batch, ok)
	}
}
