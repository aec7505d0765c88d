package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// BenchmarkManyTags measures saving and deleting events that carry 2,000
// tags (the relay's --max-event-tags default), with 8 publishers as in
// BenchmarkSave. Multi-letter tag names (the usual case: "client",
// "alt", "expiration", app-specific names) have no index since migration
// 7, so an event of them costs about what an untagged one does;
// single-letter names ("t") are indexed as before, one row each, and
// show in the same run what every 2,000-tag event cost before.
func BenchmarkManyTags(b *testing.B) {
	for _, bc := range []struct {
		name string
		tag  func(i int) nostr.Tag
	}{
		{"multi-letter names", func(i int) nostr.Tag { return nostr.Tag{fmt.Sprintf("label%d", i%7), fmt.Sprintf("value-%d", i)} }},
		{"single-letter names", func(i int) nostr.Tag { return nostr.Tag{"t", fmt.Sprintf("value-%d", i)} }},
		{"no tags", nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "bench.db")
			s := openT(b, Config{Path: path, Synchronous: "NORMAL"})
			authors := make([]storetest.Author, 8)
			for i := range authors {
				authors[i] = storetest.NewAuthor(b)
			}
			evs := make([]*nostr.Event, b.N)
			now := nostr.Now()
			for i := range evs {
				var tags nostr.Tags
				if bc.tag != nil {
					tags = make(nostr.Tags, 2000)
					for j := range tags {
						tags[j] = bc.tag(i*2000 + j)
					}
				}
				evs[i] = authors[i%8].Event(b, 1, now-nostr.Timestamp(i%60), tags, fmt.Sprintf("event %d", i))
			}
			var next atomic.Int64
			ctx := context.Background()
			b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			cpu := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Save(ctx, evs[next.Add(1)-1]); err != nil {
						b.Errorf("Save: %v", err)
						return
					}
				}
			})
			saveCPU := processCPU() - cpu
			b.StopTimer()
			var rows int64
			if err := s.readDB.QueryRow(`SELECT COUNT(*) FROM tags`).Scan(&rows); err != nil {
				b.Fatal(err)
			}
			if _, err := s.checkpoint(ctx); err != nil {
				b.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]string, len(evs))
			for i, ev := range evs {
				ids[i] = ev.ID
			}
			cpu = processCPU()
			for i := 0; i < len(ids); i += 64 {
				if _, err := s.Delete(ctx, ids[i:min(i+64, len(ids))], storage.ReasonAdmin); err != nil {
					b.Fatal(err)
				}
			}
			deleteCPU := processCPU() - cpu
			b.ReportMetric(float64(saveCPU.Microseconds())/float64(b.N), "save-cpu-µs/event")
			b.ReportMetric(float64(deleteCPU.Microseconds())/float64(b.N), "delete-cpu-µs/event")
			b.ReportMetric(float64(rows)/float64(b.N), "tag-rows/event")
			b.ReportMetric(float64(fi.Size())/float64(b.N), "db-bytes/event")
		})
	}
}

// TestMigration6DropsUnindexedTagRows: a database whose tags table holds
// rows for every tag name (as before migration 6) keeps only the
// single-letter ones after the upgrade, and filters answer as before.
func TestMigration6DropsUnindexedTagRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openT(t, Config{Path: path})
	ctx := context.Background()
	ev := storetest.NewAuthor(t).Event(t, 1, nostr.Now()-60, nostr.Tags{{"t", "kept"}, {"client", "gone"}, {"alt", "gone"}}, "x")
	if _, err := s.Save(ctx, ev); err != nil {
		t.Fatal(err)
	}
	// Back to the state before migration 6, rows for every name.
	downgradeTo(t, s.writeDB, 5)
	for _, q := range []string{
		`INSERT INTO tags (name, value, event) SELECT 'client', 'gone', n FROM events`,
		`INSERT INTO tags (name, value, event) SELECT 'alt', 'gone', n FROM events`,
	} {
		if _, err := s.writeDB.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Config{Path: path})
	var names []string
	rows, err := s.readDB.Query(`SELECT name FROM tags ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	rows.Close()
	if len(names) != 1 || names[0] != "t" {
		t.Fatalf("tag rows after the upgrade: %q, want only t", names)
	}
	if n, err := s.Count(ctx, nostr.Filter{Tags: nostr.TagMap{"t": {"kept"}}}); err != nil || n != 1 {
		t.Fatalf("#t after the upgrade: %d, %v", n, err)
	}
	// Deleting the event still leaves no row behind.
	if _, err := s.Delete(ctx, []string{ev.ID}, storage.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := s.readDB.QueryRow(`SELECT COUNT(*) FROM tags`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d tag rows left after Delete (%v)", left, err)
	}
}
