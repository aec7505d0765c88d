package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

func openT(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open(%q): %v", cfg.Path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "nested", "burrow.db")
		return func(t *testing.T) storage.Store { return openT(t, Config{Path: path}) }
	})
}

// TestOneEventChunks runs the conformance cases of chunked removals on a
// store whose ban and vanish chunks hold one event each.
func TestOneEventChunks(t *testing.T) {
	storetest.RunOneEventChunks(t, func(t *testing.T) storage.Store {
		s := openT(t, Config{Path: filepath.Join(t.TempDir(), "burrow.db")})
		s.chunkCap = 1
		return s
	})
}

func TestOpenRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"empty path", Config{}},
		{"path with a query", Config{Path: filepath.Join(dir, "x.db?mode=memory")}},
		{"unknown synchronous", Config{Path: filepath.Join(dir, "x.db"), Synchronous: "SOMETIMES"}},
		{"negative read conns", Config{Path: filepath.Join(dir, "x.db"), ReadConns: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := Open(context.Background(), tt.cfg); err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
		})
	}
}

func TestMigrationsAreIdempotentOnReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "burrow.db")
	ev := storetest.NewAuthor(t).Event(t, 1, nostr.Now()-60, nil, "survives reopen")
	for i := range 3 {
		s, err := Open(context.Background(), Config{Path: path})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		var versions, newest int
		if err := s.readDB.QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&versions, &newest); err != nil {
			t.Fatalf("read schema_migrations: %v", err)
		}
		all := migrations()
		if versions != len(all) || newest != all[len(all)-1].version {
			t.Fatalf("open %d: %d migrations recorded, newest %d; want %d, %d", i, versions, newest, len(all), all[len(all)-1].version)
		}
		if i == 0 {
			if _, err := s.Save(context.Background(), ev); err != nil {
				t.Fatalf("Save: %v", err)
			}
		} else if n, err := s.Count(context.Background(), nostr.Filter{}); err != nil || n != 1 {
			t.Fatalf("open %d: Count = %d, %v; want the one saved event", i, n, err)
		}
		// Applying again on the live database must do nothing either.
		if applied, err := migrate(context.Background(), s.writeDB); err != nil || applied != 0 {
			t.Fatalf("migrate again = %d, %v; want 0, nil", applied, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
}

func TestOpenRefusesANewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "burrow.db")
	s := openT(t, Config{Path: path})
	if _, err := s.writeDB.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (1000, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(context.Background(), Config{Path: path}); err == nil {
		_ = s2.Close()
		t.Fatal("Open accepted a database with a newer schema version")
	}
}

func TestPragmas(t *testing.T) {
	for _, sync := range []struct {
		cfg  string
		want int // PRAGMA synchronous answers a number
	}{{"", 2}, {"full", 2}, {"NORMAL", 1}, {"EXTRA", 3}, {"OFF", 0}} {
		t.Run("synchronous "+sync.cfg, func(t *testing.T) {
			s := openT(t, Config{Path: filepath.Join(t.TempDir(), "burrow.db"), Synchronous: sync.cfg})
			var secure, synchronous int
			var journal string
			// The writer's connection is the one that deletes.
			conn, err := s.writeDB.Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for _, p := range []struct {
				q    string
				dest any
			}{{`PRAGMA secure_delete`, &secure}, {`PRAGMA journal_mode`, &journal}, {`PRAGMA synchronous`, &synchronous}} {
				if err := conn.QueryRowContext(context.Background(), p.q).Scan(p.dest); err != nil {
					t.Fatalf("%s: %v", p.q, err)
				}
			}
			if secure != 1 || journal != "wal" || synchronous != sync.want {
				t.Fatalf("secure_delete=%d journal_mode=%s synchronous=%d; want 1, wal, %d", secure, journal, synchronous, sync.want)
			}
			var tempStore int
			if err := conn.QueryRowContext(context.Background(), `PRAGMA temp_store`).Scan(&tempStore); err != nil || tempStore != 2 {
				t.Fatalf("writer temp_store = %d, %v; want 2 (memory)", tempStore, err)
			}
			var readerSecure, readerTemp int
			if err := s.readDB.QueryRow(`SELECT (SELECT secure_delete FROM pragma_secure_delete), (SELECT temp_store FROM pragma_temp_store)`).Scan(&readerSecure, &readerTemp); err != nil || readerSecure != 1 || readerTemp != 2 {
				t.Fatalf("reader secure_delete = %d, temp_store = %d, %v; want 1, 2", readerSecure, readerTemp, err)
			}
		})
	}
}

func TestDeletedContentLeavesTheFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "burrow.db")
	s := openT(t, Config{Path: path})
	ctx := context.Background()
	a := storetest.NewAuthor(t)
	secret := "RECOGNISABLE-KEYPACKAGE-BYTES-0f1e2d3c4b5a"
	tagSecret := "RECOGNISABLE-TAG-VALUE-99aa88bb"
	var victims []*nostr.Event
	for i := range 3 {
		ev := a.Event(t, 30443, nostr.Now()-60+nostr.Timestamp(i), nostr.Tags{{"d", "device"}, {"x", tagSecret}}, secret)
		victims = append(victims, ev)
	}
	keep := a.Event(t, 1, nostr.Now()-60, nil, "ordinary note that stays")
	for _, ev := range []*nostr.Event{victims[0], keep, victims[1], victims[2]} {
		if _, err := s.Save(ctx, ev); err != nil {
			t.Fatalf("Save: %v", err)
		}
	}
	// Make sure the bytes reached the main file before the deletion, so the
	// test checks secure_delete and not only the WAL truncation.
	if _, err := s.checkpoint(ctx); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if !fileContains(t, path, secret) {
		t.Fatal("test setup: the content never reached the database file")
	}
	// victims[0..1] were replaced on save; delete the survivor.
	if _, err := s.Delete(ctx, []string{victims[2].ID}, storage.ReasonDeletionRequest); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	// A reader in the middle of a query holds the WAL, so a TRUNCATE
	// checkpoint cannot finish: this is why checkpoint retries.
	next, stop := iter.Pull2(s.Query(ctx, nostr.Filter{}))
	if _, err, ok := next(); !ok || err != nil {
		t.Fatalf("open reader: ok=%v err=%v", ok, err)
	}
	busy, _, _, err := s.checkpointOnce(ctx)
	if err != nil {
		t.Fatalf("checkpoint with a reader: %v", err)
	}
	if busy != 1 {
		t.Fatalf("checkpoint with an active reader reported busy=%d, want 1", busy)
	}
	stop()
	if _, err = s.checkpoint(ctx); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	var timeout int
	if err := s.writeDB.QueryRow(`PRAGMA busy_timeout`).Scan(&timeout); err != nil || timeout != int(defaultBusyTimeout.Milliseconds()) {
		t.Fatalf("writer busy_timeout after checkpoint = %d, %v; want it restored", timeout, err)
	}
	for _, f := range []string{path, path + "-wal"} {
		for _, needle := range []string{secret, tagSecret} {
			if fileContains(t, f, needle) {
				t.Errorf("%s still holds %q after delete and checkpoint", filepath.Base(f), needle)
			}
		}
	}
	if info, err := os.Stat(path + "-wal"); err == nil && info.Size() != 0 {
		t.Errorf("WAL is %d bytes after a TRUNCATE checkpoint, want 0", info.Size())
	}
	if !fileContains(t, path, keep.Content) {
		t.Error("the event that was not deleted is missing from the file")
	}
}

func fileContains(t *testing.T, path, needle string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return bytes.Contains(b, []byte(needle))
}

// BenchmarkSave measures Save throughput with 8 concurrent publishers (the
// relay's target is about 5,000 events/s). Events are signed before the timer
// starts.
func BenchmarkSave(b *testing.B) {
	for _, bc := range []struct {
		name string
		sync string
		kind int
	}{
		{"kind1/synchronous=FULL", "FULL", 1},
		{"kind445/synchronous=FULL", "FULL", 445},
		{"kind1/synchronous=NORMAL", "NORMAL", 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var commits, committed atomic.Int64
			s := openT(b, Config{Path: filepath.Join(b.TempDir(), "bench.db"), Synchronous: bc.sync,
				OnCommit: func(writes int, _ time.Duration) { commits.Add(1); committed.Add(int64(writes)) }})
			authors := make([]storetest.Author, 8)
			for i := range authors {
				authors[i] = storetest.NewAuthor(b)
			}
			evs := make([]*nostr.Event, b.N)
			now := nostr.Now()
			for i := range evs {
				tags := nostr.Tags{{"p", authors[(i+1)%8].PubKey}, {"t", "bench"}}
				if bc.kind == 445 {
					tags = nostr.Tags{{"h", fmt.Sprintf("group-%d", i%4)}}
				}
				// Live traffic: created_at within the last minute.
				evs[i] = authors[i%8].Event(b, bc.kind, now-nostr.Timestamp(i%60), tags, fmt.Sprintf("benchmark event %d", i))
			}
			var next atomic.Int64
			ctx := context.Background()
			// 2 cores here: parallelism 4 gives 8 publishers.
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
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/event")
			b.ReportMetric(float64(committed.Load())/float64(max(1, commits.Load())), "ops/commit")
		})
	}
}

func TestSlotKeysAndAddresses(t *testing.T) {
	pk := "ab"
	for _, tt := range []struct {
		address string
		key     string
		ok      bool
	}{
		{"30443:ab:device", "30443:ab:device", true},
		{"30443:ab:", "30443:ab:", true},
		{"30443:ab", "30443:ab:", true},
		{"30023:ab:with:colons", "30023:ab:with:colons", true},
		{"10002:ab:", "10002:ab:", true},
		{"10002:ab:ignored-d", "10002:ab:", true}, // replaceable kinds have one slot
		{"0:ab:", "0:ab:", true},
		{"1:ab:", "", false},     // regular kinds have no slot
		{"20000:ab:", "", false}, // nor do ephemeral ones
		{"x:ab:d", "", false},
		{"30443", "", false},
		{"", "", false},
	} {
		key, ok := parseAddress(tt.address)
		if key != tt.key || ok != tt.ok {
			t.Errorf("parseAddress(%q) = %q, %v; want %q, %v", tt.address, key, ok, tt.key, tt.ok)
		}
	}
	// An event's own slot key is the address a kind 5 names it by.
	if key, _ := slotKey(30443, pk, "device"); key != "30443:ab:device" {
		t.Errorf("slotKey = %q", key)
	}
}

func TestReplaceKeyIsUniqueInTheSchema(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "burrow.db")})
	insert := `INSERT INTO events (id, pubkey, created_at, kind, tags, content, sig, replace_key) VALUES (?, 'pk', 1, 30443, '[]', '', '', 'slot')`
	if _, err := s.writeDB.Exec(insert, "id1"); err != nil {
		t.Fatalf("first row: %v", err)
	}
	if _, err := s.writeDB.Exec(insert, "id2"); err == nil {
		t.Fatal("a second row with the same replace_key was accepted")
	}
	// Events without a slot are not constrained by it.
	for _, id := range []string{"id3", "id4"} {
		if _, err := s.writeDB.Exec(`INSERT INTO events (id, pubkey, created_at, kind, tags, content, sig) VALUES (?, 'pk', 1, 1, '[]', '', '')`, id); err != nil {
			t.Fatalf("row without a slot: %v", err)
		}
	}
}

func TestSaveWithACancelledContextFails(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "burrow.db")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ev := storetest.NewAuthor(t).Event(t, 1, nostr.Now()-60, nil, "never")
	if _, err := s.Save(ctx, ev); !errors.Is(err, context.Canceled) {
		t.Fatalf("Save with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := s.Save(context.Background(), ev); err != nil {
		t.Fatalf("Save after a cancelled attempt: %v", err)
	}
}

func TestCloseCommitsQueuedWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "burrow.db")
	s, err := Open(context.Background(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.NewAuthor(t)
	evs := make([]*nostr.Event, 40)
	for i := range evs {
		evs[i] = a.Event(t, 1, nostr.Now()-60, nil, fmt.Sprintf("queued %d", i))
	}
	errs := make(chan error, len(evs))
	for _, ev := range evs {
		go func() {
			_, err := s.Save(context.Background(), ev)
			errs <- err
		}()
	}
	saved := 0
	closed := make(chan error, 1)
	for i := range evs {
		if err := <-errs; err == nil {
			saved++
		} else if !errors.Is(err, storage.ErrClosed) {
			t.Errorf("Save: %v", err)
		}
		if i == 9 {
			// Close while about 30 Saves are queued or in flight.
			go func() { closed <- s.Close() }()
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2 := openT(t, Config{Path: path})
	n, err := s2.Count(context.Background(), nostr.Filter{})
	if err != nil || n != int64(saved) {
		t.Fatalf("after Close: %d events stored, %d acknowledged (%v)", n, saved, err)
	}
}

func TestEventsWithManyTagsAreIndexedAndDeleted(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "burrow.db")})
	ctx := context.Background()
	var tags nostr.Tags
	for i := range 2*tagRowsPerInsert + 3 {
		tags = append(tags, nostr.Tag{"t", fmt.Sprintf("tag-%d", i)})
	}
	tags = append(tags, nostr.Tag{"t", "tag-0"}, nostr.Tag{"single"}) // a repeat and a tag without value
	ev := storetest.NewAuthor(t).Event(t, 1, nostr.Now()-60, tags, "many tags")
	if _, err := s.Save(ctx, ev); err != nil {
		t.Fatalf("Save: %v", err)
	}
	for _, v := range []string{"tag-0", "tag-8", "tag-18"} {
		if n, err := s.Count(ctx, nostr.Filter{Tags: nostr.TagMap{"t": {v}}}); err != nil || n != 1 {
			t.Fatalf("Count(#t=%s) = %d, %v; want 1", v, n, err)
		}
	}
	if _, err := s.Delete(ctx, []string{ev.ID}, storage.ReasonAdmin); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	var rows int
	if err := s.readDB.QueryRow(`SELECT COUNT(*) FROM tags`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d tag rows left after Delete (%v), want 0", rows, err)
	}
}

func TestFiltersThatMatchNothingRunNoQuery(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		name string
		f    nostr.Filter
		ok   bool
	}{
		{"empty filter", nostr.Filter{}, true},
		{"empty ids", nostr.Filter{IDs: []string{}}, false},
		{"empty authors", nostr.Filter{Authors: []string{}}, false},
		{"empty kinds", nostr.Filter{Kinds: []int{}}, false},
		{"empty tag values", nostr.Filter{Tags: nostr.TagMap{"p": {}}}, false},
		{"nil tag values are ignored", nostr.Filter{Tags: nostr.TagMap{"p": nil}}, true},
		{"search is unsupported", nostr.Filter{Search: "hello"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, ok := where(tt.f, now); ok != tt.ok {
				t.Fatalf("where(%v) ok = %v, want %v", tt.f, ok, tt.ok)
			}
		})
	}
}

// BenchmarkWriterBatch measures the writer alone: it commits batches of 8
// Saves on the benchmark goroutine (no publishers, no signing), so its
// cpu-µs/event is the writer's cost per event. The events mirror the relay
// benchmark's mix: kind 445 from a fresh key with one "h" among 16 groups,
// and kind 1 without tags from 16 authors, each with 600 bytes of content.
func BenchmarkWriterBatch(b *testing.B) {
	const batchSize = 8
	for _, sync := range []string{"FULL", "NORMAL"} {
		b.Run("synchronous="+sync, func(b *testing.B) {
			s := openT(b, Config{Path: filepath.Join(b.TempDir(), "bench.db"), Synchronous: sync})
			hex := func(i, salt int) string { return fmt.Sprintf("%056x%08x", salt, i) }
			now := nostr.Now()
			ops := make([]*writeOp, b.N)
			results := make([]storage.Result, b.N)
			for i := range ops {
				ev := &nostr.Event{
					// A multiplicative hash spreads ids over the key space
					// like real ids.
					ID:        fmt.Sprintf("%064x", uint64(i)*0x9e3779b97f4a7c15),
					CreatedAt: now - nostr.Timestamp(i%60),
					Content:   strings.Repeat("c", 600),
					Sig:       hex(i, 0x5),
				}
				if i%2 == 0 {
					ev.Kind, ev.PubKey, ev.Tags = 445, hex(i, 0xa), nostr.Tags{{"h", hex(i%16, 0xb)}}
				} else {
					ev.Kind, ev.PubKey, ev.Tags = 1, hex(i%16, 0xc), nostr.Tags{}
				}
				r, err := prepareRow(ev, time.Now())
				if err != nil {
					b.Fatal(err)
				}
				res := &results[i]
				ops[i] = &writeOp{ctx: context.Background(), apply: func(tx *txn) error { return tx.save(r, res) }, reply: make(chan error, 1)}
			}
			b.ResetTimer()
			user, sys := processCPUSplit()
			for i := 0; i < b.N; i += batchSize {
				batch := ops[i:min(i+batchSize, b.N)]
				s.commit(batch)
				for _, op := range batch {
					if err := <-op.reply; err != nil {
						b.Fatalf("Save: %v", err)
					}
				}
			}
			user2, sys2 := processCPUSplit()
			b.ReportMetric(float64((user2-user).Microseconds())/float64(b.N), "user-µs/event")
			b.ReportMetric(float64((sys2-sys).Microseconds())/float64(b.N), "sys-µs/event")
			b.ReportMetric(float64(s.walWritten.Load())/float64(b.N), "wal-pages/event")
		})
	}
}

// TestBatchIsolatesAFailedOp runs batches straight through commit: whatever
// one op does (a refusal, a backend failure after it has written), the other
// ops of its batch are stored exactly once and report what they did exactly
// once, and the failed op leaves nothing behind.
func TestBatchIsolatesAFailedOp(t *testing.T) {
	errBackend := errors.New("backend failure after writing")
	for _, tt := range []struct {
		name string
		// failing returns the op under test, given an event already stored.
		failing func(stored *nostr.Event) func(*txn) error
		wantErr error
	}{
		{"refusal before writing", func(stored *nostr.Event) func(*txn) error {
			r, err := prepareRow(stored, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return func(tx *txn) error { return tx.save(r, &storage.Result{}) }
		}, storage.ErrDuplicate},
		{"backend failure after writing", func(*nostr.Event) func(*txn) error {
			return func(tx *txn) error {
				if err := tx.tombstone("ff00000000000000000000000000000000000000000000000000000000000000", storage.ReasonAdmin); err != nil {
					return err
				}
				return errBackend
			}
		}, errBackend},
		{"refusal after writing", func(*nostr.Event) func(*txn) error {
			return func(tx *txn) error {
				if err := tx.tombstone("ff00000000000000000000000000000000000000000000000000000000000000", storage.ReasonAdmin); err != nil {
					return err
				}
				return fmt.Errorf("late refusal: %w", storage.ErrReplaced)
			}
		}, storage.ErrReplaced},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var commits storetest.CommitLog
			s := openT(t, Config{Path: filepath.Join(t.TempDir(), "burrow.db"), OnCommit: commits.Add})
			ctx := context.Background()
			a := storetest.NewAuthor(t)
			now := nostr.Now()
			stored := a.Event(t, 1, now-100, nil, "already stored")
			oldProfile := a.Event(t, 0, now-90, nil, "old profile")
			for _, ev := range []*nostr.Event{stored, oldProfile} {
				if _, err := s.Save(ctx, ev); err != nil {
					t.Fatalf("Save: %v", err)
				}
			}
			newProfile := a.Event(t, 0, now-80, nil, "new profile")
			note := a.Event(t, 1, now-70, nostr.Tags{{"t", "kept"}}, "note")
			var results [2]storage.Result
			saveOp := func(ev *nostr.Event, res *storage.Result) *writeOp {
				r, err := prepareRow(ev, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				return &writeOp{ctx: ctx, reply: make(chan error, 1), apply: func(tx *txn) error {
					*res = storage.Result{}
					return tx.save(r, res)
				}}
			}
			batch := []*writeOp{
				saveOp(newProfile, &results[0]),
				{ctx: ctx, reply: make(chan error, 1), apply: tt.failing(stored)},
				saveOp(note, &results[1]),
			}
			before := commits.Sizes(t)
			s.commit(batch)
			// One commit of the three, reported once even when the batch
			// was run again with savepoints.
			if got := commits.Sizes(t)[len(before):]; !slices.Equal(got, []int{3}) {
				t.Errorf("OnCommit reported %v, want [3]", got)
			}
			for i, op := range batch {
				err := <-op.reply
				if i == 1 {
					if !errors.Is(err, tt.wantErr) {
						t.Errorf("failing op: %v, want %v", err, tt.wantErr)
					}
				} else if err != nil {
					t.Errorf("op %d: %v", i, err)
				}
			}
			if d := results[0].Deleted; len(d) != 1 || d[0].ID != oldProfile.ID {
				t.Errorf("replacing save reported deleted %v, want only %s once", d, oldProfile.ID)
			}
			for _, f := range []nostr.Filter{{IDs: []string{newProfile.ID, note.ID, stored.ID}}, {Tags: nostr.TagMap{"t": {"kept"}}}} {
				want := int64(len(f.IDs))
				if f.IDs == nil {
					want = 1
				}
				if n, err := s.Count(ctx, f); err != nil || n != want {
					t.Errorf("Count(%v) = %d, %v; want %d", f, n, err, want)
				}
			}
			var tombstones int
			if err := s.readDB.QueryRow(`SELECT COUNT(*) FROM tombstones`).Scan(&tombstones); err != nil || tombstones != 1 {
				t.Errorf("%d tombstones (%v), want 1: the replaced profile's, none from the failed op", tombstones, err)
			}
		})
	}
}

// TestBatchFailsWholeWhenSQLiteRolledBack: when an op's backend failure made
// SQLite roll the whole transaction back (as it may on a full disk), no op of
// the batch is kept, and every op is told so: the ops after it must not run,
// and commit, outside a transaction.
func TestBatchFailsWholeWhenSQLiteRolledBack(t *testing.T) {
	var commits storetest.CommitLog
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "burrow.db"), OnCommit: commits.Add})
	ctx := context.Background()
	a := storetest.NewAuthor(t)
	now := nostr.Now()
	before := a.Event(t, 1, now-20, nostr.Tags{{"t", "batch"}}, "before")
	after := a.Event(t, 1, now-10, nostr.Tags{{"t", "batch"}}, "after")
	errBackend := errors.New("disk gone")
	saveOp := func(ev *nostr.Event) *writeOp {
		r, err := prepareRow(ev, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return &writeOp{ctx: ctx, reply: make(chan error, 1), apply: func(tx *txn) error {
			return tx.save(r, &storage.Result{})
		}}
	}
	rolledBack := &writeOp{ctx: ctx, reply: make(chan error, 1), apply: func(tx *txn) error {
		tx.dirty = true
		// What SQLite does by itself on some I/O errors.
		if _, err := tx.tx.ExecContext(tx.ctx, `ROLLBACK`); err != nil {
			t.Fatalf("ROLLBACK: %v", err)
		}
		return errBackend
	}}
	batch := []*writeOp{saveOp(before), rolledBack, saveOp(after)}
	s.commit(batch)
	for i, op := range batch {
		if err := <-op.reply; !errors.Is(err, errBackend) {
			t.Errorf("op %d: %v, want the batch's failure (%v)", i, err, errBackend)
		}
	}
	if n, err := s.Count(ctx, nostr.Filter{Tags: nostr.TagMap{"t": {"batch"}}}); err != nil || n != 0 {
		t.Errorf("Count = %d, %v; want 0: a failed batch keeps nothing", n, err)
	}
	if got := commits.Sizes(t); len(got) != 0 {
		t.Errorf("OnCommit reported %v for a batch that was rolled back", got)
	}
}

// TestCreatedAtIndexMigration opens a database as migration 1 left it (the
// created_at index keyed by id too) and checks that reopening swaps the index
// and keeps the NIP-01 order: newest first, ties by lowest id.
func TestCreatedAtIndexMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "burrow.db")
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.NewAuthor(t)
	now := nostr.Now()
	var evs []*nostr.Event
	for i := range 6 {
		evs = append(evs, a.Event(t, 1, now-nostr.Timestamp(i%2), nil, fmt.Sprintf("event %d", i)))
	}
	for _, ev := range evs {
		if _, err := s.Save(ctx, ev); err != nil {
			t.Fatalf("Save: %v", err)
		}
	}
	if _, err := s.writeDB.Exec(`DROP INDEX events_created_at; CREATE INDEX events_created ON events (created_at DESC, id);
DELETE FROM schema_migrations WHERE version = 2`); err != nil {
		t.Fatalf("restore the version 1 schema: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Config{Path: path})
	var indexes []string
	rows, err := s.readDB.Query(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND name LIKE 'events_created%' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		indexes = append(indexes, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(indexes) != 1 || indexes[0] != "events_created_at" {
		t.Fatalf("created_at indexes after reopening = %v, want [events_created_at]", indexes)
	}
	slices.SortFunc(evs, func(x, y *nostr.Event) int {
		return cmp.Or(cmp.Compare(y.CreatedAt, x.CreatedAt), cmp.Compare(x.ID, y.ID))
	})
	var got []string
	for ev, err := range s.Query(ctx, nostr.Filter{Limit: 4}) {
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		got = append(got, ev.ID)
	}
	for i, id := range got {
		if id != evs[i].ID {
			t.Fatalf("Query order = %v, want the first 4 of %v", got, evs)
		}
	}
	if len(got) != 4 {
		t.Fatalf("Query returned %d events, want 4", len(got))
	}
}

func BenchmarkSlotReplacements(b *testing.B) {
	storetest.BenchmarkSlotReplacements(b, openT(b, Config{Path: filepath.Join(b.TempDir(), "bench.db")}))
}

func BenchmarkKeyPackageDeletions(b *testing.B) {
	storetest.BenchmarkKeyPackageDeletions(b, openT(b, Config{Path: filepath.Join(b.TempDir(), "bench.db")}))
}

func BenchmarkGroupSave(b *testing.B) {
	for _, groups := range []int{1, 100} {
		for _, seq := range []bool{true, false} {
			b.Run(fmt.Sprintf("groups=%d/sequencing=%v", groups, seq), func(b *testing.B) {
				s := openT(b, Config{Path: filepath.Join(b.TempDir(), "bench.db"), DisableSequencing: !seq})
				storetest.BenchmarkGroupSave(b, s, groups)
			})
		}
	}
}
