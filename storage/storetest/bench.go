package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// The KeyPackage benchmarks every backend runs the same way, with 8
// concurrent writers (the relay's default benchmark load) and events signed
// before the timer starts. Each writer works through benchAuthors authors
// in turn: a backend may spread saves over its connections by author (the
// PostgreSQL store does), and with one author per writer how evenly eight
// random keys happened to hash decided the figure, which then moved by 2x
// from run to run.

// benchAuthors is how many authors each writer of a KeyPackage benchmark
// publishes for.
const benchAuthors = 32

func benchWriterAuthors(b *testing.B, writers int) [][]Author {
	authors := make([][]Author, writers)
	for w := range authors {
		for range benchAuthors {
			authors[w] = append(authors[w], NewAuthor(b))
		}
	}
	return authors
}

// BenchmarkSlotReplacements measures kind 30443 slot replacements: each
// operation saves a newer version into one author's slot through
// SaveKeyPackage, which deletes (and tombstones) the older version in the
// same transaction. Every slot holds a version before the timer starts, so
// every timed save replaces one.
func BenchmarkSlotReplacements(b *testing.B, s storage.Store) {
	const writers = 8
	ctx := context.Background()
	authors := benchWriterAuthors(b, writers)
	base := nostr.Now() - nostr.Timestamp(b.N+10)
	const d = "0000000000000000000000000000000000000000000000000000000000000000"
	for w := range authors {
		for _, a := range authors[w] {
			first := a.Event(b, 30443, base-1, nostr.Tags{{"d", d}}, benchContent())
			if _, err := s.SaveKeyPackage(ctx, first, benchKeyPackage()); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Per writer, its authors in turn, each version newer than the last.
	evs := make([][]*nostr.Event, writers)
	for i := 0; i < b.N; i++ {
		w := i % writers
		a := authors[w][len(evs[w])%benchAuthors]
		evs[w] = append(evs[w], a.Event(b, 30443, base+nostr.Timestamp(i), nostr.Tags{{"d", d}}, benchContent()))
	}
	runWriters(b, writers, func(ctx context.Context, w, n int) error {
		res, err := s.SaveKeyPackage(ctx, evs[w][n], benchKeyPackage())
		if err == nil && len(res.Deleted) != 1 {
			return fmt.Errorf("replaced %d events, want 1", len(res.Deleted))
		}
		return err
	}, func(w int) int { return len(evs[w]) })
}

// BenchmarkKeyPackageDeletions measures NIP-09 deletions of KeyPackages:
// the KeyPackages are stored before the timer starts; each operation saves a
// kind 5 that deletes one of them.
func BenchmarkKeyPackageDeletions(b *testing.B, s storage.Store) {
	const writers = 8
	ctx := context.Background()
	authors := benchWriterAuthors(b, writers)
	dels := make([][]*nostr.Event, writers)
	now := nostr.Now()
	for i := 0; i < b.N; i++ {
		w := i % writers
		a := authors[w][len(dels[w])%benchAuthors]
		kp := a.Event(b, 443, now-10, nil, benchContent())
		// Many KeyPackages per author: a cap that fits them all.
		uncapped := benchKeyPackage()
		uncapped.SlotCap = b.N
		if _, err := s.SaveKeyPackage(ctx, kp, uncapped); err != nil {
			b.Fatal(err)
		}
		dels[w] = append(dels[w], a.Event(b, 5, now, nostr.Tags{{"e", kp.ID}, {"k", "443"}}, ""))
	}
	runWriters(b, writers, func(ctx context.Context, w, n int) error {
		res, err := s.Save(ctx, dels[w][n])
		if err == nil && len(res.Deleted) != 1 {
			return fmt.Errorf("deleted %d events, want 1", len(res.Deleted))
		}
		return err
	}, func(w int) int { return len(dels[w]) })
}

// runWriters times writers goroutines each running op over its own events
// in order, and reports operations per second.
func runWriters(b *testing.B, writers int, op func(ctx context.Context, w, n int) error, count func(w int) int) {
	b.Helper()
	ctx := context.Background()
	var failed atomic.Value
	done := make(chan struct{})
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < writers; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for n := 0; n < count(w); n++ {
				if err := op(ctx, w, n); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	for w := 0; w < writers; w++ {
		<-done
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
}

func benchContent() string {
	raw := make([]byte, 300)
	rand.Read(raw)
	return hex.EncodeToString(raw)
}

func benchKeyPackage() storage.KeyPackage {
	ref := make([]byte, 32)
	rand.Read(ref)
	return storage.KeyPackage{Ref: hex.EncodeToString(ref), NotAfter: time.Now().Add(80 * 24 * time.Hour), SlotCap: 10, EvictAfter: 7 * 24 * time.Hour}
}

// BenchmarkGroupSave measures plain Save of kind 445 group messages by 8
// concurrent writers, spread round-robin over groups groups (1: every save
// contends for one group's counter). Run it on a store with sequencing on
// and on one with it disabled (each backend's Config.DisableSequencing) to
// see what numbering costs.
func BenchmarkGroupSave(b *testing.B, s storage.Store, groups int) {
	const writers = 8
	authors := make([]Author, writers)
	for i := range authors {
		authors[i] = NewAuthor(b)
	}
	evs := make([][]*nostr.Event, writers)
	now := nostr.Now()
	for i := 0; i < b.N; i++ {
		w := i % writers
		h := fmt.Sprintf("%064x", i%groups)
		evs[w] = append(evs[w], GroupEvent(b, authors[w], h, now-10))
	}
	runWriters(b, writers, func(ctx context.Context, w, n int) error {
		_, err := s.Save(ctx, evs[w][n])
		return err
	}, func(w int) int { return len(evs[w]) })
}
