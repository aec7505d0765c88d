package postgres

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// BenchmarkKeyPackageScrubAtScale runs the KeyPackage scrub under the load
// of issue 9 item 6: 250,000 stored KeyPackages (10 per author, about 2 kB
// of incompressible base64 content each), 50
// deletions a second (kind 5 by the author), 20 new KeyPackages a second
// (fresh authors) and two readers asking for an author's KeyPackages back
// to back (one in ten asks by id, one in fifty for the newest 50 kind 30443
// of anyone). A first phase without deletions is the baseline. It reports
// the latency of each kind of operation in both phases, the rewrites'
// lock holds, and the age of the oldest deletion not yet scrubbed (its
// content still in a file), sampled every 250 ms until every deletion is.
//
//	go test ./storage/postgres -run '^$' -bench KeyPackageScrubAtScale -benchtime 1x -timeout 30m
func BenchmarkKeyPackageScrubAtScale(b *testing.B) {
	for range b.N { // one run takes minutes: -benchtime 1x
		runScrubLoad(b, scrubLoad{
			keyPackages: 250_000, deletionsPerSecond: 50, writesPerSecond: 20, readers: 2,
			baseline: 20 * time.Second, run: 90 * time.Second, within: 60 * time.Second,
		})
	}
}

type scrubLoad struct {
	keyPackages        int // stored before the run, 10 per author
	deletionsPerSecond int
	writesPerSecond    int
	readers            int
	baseline, run      time.Duration
	within             time.Duration // Config.KeyPackageRewriteWithin
}

// latencies collects operation times by kind of operation.
type latencies struct {
	mu  sync.Mutex
	ops map[string][]time.Duration
}

func (l *latencies) add(op string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ops == nil {
		l.ops = make(map[string][]time.Duration)
	}
	l.ops[op] = append(l.ops[op], d)
}

// summary is one line per operation: count, p50, p99, max.
func (l *latencies) summary() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, op := range slices.Sorted(mapKeys(l.ops)) {
		ds := slices.Clone(l.ops[op])
		slices.Sort(ds)
		out = append(out, fmt.Sprintf("%-12s n=%6d p50=%7.2fms p99=%7.2fms max=%7.2fms",
			op, len(ds), ms(percentile(ds, 0.50)), ms(percentile(ds, 0.99)), ms(ds[len(ds)-1])))
	}
	return out
}

func (l *latencies) stat(op string, p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	ds := slices.Clone(l.ops[op])
	slices.Sort(ds)
	return percentile(ds, p)
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// storedKP is one KeyPackage stored by the load's set-up.
type storedKP struct {
	id     string
	author int
}

func runScrubLoad(b *testing.B, load scrubLoad) {
	ctx := context.Background()
	pg := testsvc.Postgres(b)
	rec := &rewriteRecorder{}
	s, err := Open(ctx, Config{URL: pg.URL, KeyPackageRewriteWithin: load.within, Logger: slog.New(rec)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	probe, err := pgxpool.New(ctx, pg.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer probe.Close()

	// Set-up: authors whose keys we hold, 10 KeyPackages each, inserted
	// in SQL (signing 250,000 events would take longer than the run).
	nAuthors := load.keyPackages / 10
	authors := make([]storetest.Author, nAuthors)
	pubkeys := make([][]byte, nAuthors)
	index := make(map[string]int, nAuthors)
	for i := range authors {
		authors[i] = storetest.NewAuthor(b)
		pubkeys[i], _ = hex.DecodeString(authors[i].PubKey)
		index[string(pubkeys[i])] = i
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	start := time.Now()
	const batch = 2500
	for i := 0; i < nAuthors; i += batch {
		if _, err := probe.Exec(ctx, `
			WITH r (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref) AS (
			SELECT sha256(a.pk || int4send(s) || $3), a.pk, $2 - s, 30443, '\x00'::bytea,
			       convert_to((SELECT string_agg(encode(sha512(a.pk || int4send(s) || int4send(j) || $3), 'base64'), '')
			                     FROM generate_series(1, 22) AS j), 'UTF8'),
			       sha512(a.pk || int4send(s)), int4send(s), NULL::bigint, sha256(a.pk || int4send(s) || $3 || '\x01'::bytea)
			  FROM unnest($1::bytea[]) AS a(pk), generate_series(0, 9) AS s),
			     c AS (INSERT INTO keypackage_content (part, id, content) SELECT burrow_kp_part(r.pubkey), r.id, r.content FROM r)
			INSERT INTO keypackages (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref, part)
			SELECT id, pubkey, created_at, kind, tags, '\x'::bytea, sig, slot_d, expires_at, kp_ref, burrow_kp_part(pubkey) FROM r`,
			pubkeys[i:min(i+batch, nAuthors)], time.Now().Unix()-3600, salt); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := probe.Exec(ctx, "VACUUM ANALYZE keypackages"); err != nil {
		b.Fatal(err)
	}
	if _, err := probe.Exec(ctx, "CHECKPOINT"); err != nil {
		b.Fatal(err)
	}
	var stored []storedKP
	rows, _ := probe.Query(ctx, "SELECT id, pubkey FROM keypackages")
	var id, pk []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &pk}, func() error {
		stored = append(stored, storedKP{hex.EncodeToString(id), index[string(pk)]})
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	var size int64
	if err := probe.QueryRow(ctx, "SELECT "+kpTableSizeSQL).Scan(&size); err != nil {
		b.Fatal(err)
	}
	b.Logf("set-up: %d KeyPackages of %d authors stored in %v; KeyPackage relations %d MB",
		len(stored), nAuthors, time.Since(start).Round(time.Second), size>>20)
	mrand.Shuffle(len(stored), func(i, j int) { stored[i], stored[j] = stored[j], stored[i] })

	// New KeyPackages by fresh authors, signed ahead.
	nWrites := load.writesPerSecond * int((load.baseline+load.run)/time.Second+1)
	writes := make([]*nostr.Event, nWrites)
	for i := range writes {
		raw := make([]byte, 1440)
		_, _ = rand.Read(raw)
		writes[i] = storetest.NewAuthor(b).Event(b, 443, nostr.Now()-60, nil, base64.StdEncoding.EncodeToString(raw))
	}

	var (
		lat        [2]latencies // baseline, run
		phase      = make(chan int, 1)
		stopAll    = make(chan struct{})
		wg         sync.WaitGroup
		failMu     sync.Mutex
		failure    error
		deleted    int
		maxPending float64
	)
	fail := func(err error) {
		failMu.Lock()
		defer failMu.Unlock()
		if failure == nil {
			failure = err
		}
	}
	cur := func() *latencies {
		select {
		case p := <-phase:
			phase <- p
			return &lat[p]
		default:
			return &lat[0]
		}
	}
	// A failed operation counts with its time as an error of its kind; the
	// run goes on, so a design whose waits exceed lock_timeout shows it.
	timed := func(op string, f func() error) {
		l := cur()
		t0 := time.Now()
		err := f()
		l.add(op, time.Since(t0))
		if err != nil {
			l.add(op+" FAILED", time.Since(t0))
			fail(fmt.Errorf("%s: %w", op, err))
		}
	}
	drain := func(f nostr.Filter) error {
		for _, err := range s.Query(ctx, f) {
			if err != nil {
				return err
			}
		}
		return nil
	}

	for r := range load.readers {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(r), 1))
			for n := 0; ; n++ {
				select {
				case <-stopAll:
					return
				default:
				}
				switch {
				case n%50 == 49:
					timed("read-kind", func() error { return drain(nostr.Filter{Kinds: []int{30443}, Limit: 50}) })
				case n%10 == 9:
					k := stored[rng.IntN(len(stored))]
					timed("read-id", func() error { return drain(nostr.Filter{IDs: []string{k.id}}) })
				default:
					a := authors[rng.IntN(len(authors))]
					timed("read-author", func() error {
						return drain(nostr.Filter{Authors: []string{a.PubKey}, Kinds: []int{443, 30443}})
					})
				}
			}
		})
	}
	wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(load.writesPerSecond))
		defer tick.Stop()
		for _, ev := range writes {
			select {
			case <-stopAll:
				return
			case <-tick.C:
			}
			timed("write", func() error {
				_, err := s.SaveKeyPackage(ctx, ev, storage.KeyPackage{Ref: newRefHex(), NotAfter: time.Now().Add(30 * 24 * time.Hour), SlotCap: 10, EvictAfter: 7 * 24 * time.Hour})
				return err
			})
		}
	})
	deleting := make(chan struct{})
	wg.Go(func() {
		select {
		case <-deleting:
		case <-stopAll:
			return
		}
		tick := time.NewTicker(time.Second / time.Duration(load.deletionsPerSecond))
		defer tick.Stop()
		for _, k := range stored {
			select {
			case <-stopAll:
				return
			case <-tick.C:
			}
			a := authors[k.author]
			ev := &nostr.Event{PubKey: a.PubKey, CreatedAt: nostr.Now(), Kind: 5, Tags: nostr.Tags{{"e", k.id}}}
			if err := ev.Sign(a.Secret); err != nil {
				fail(err)
				return
			}
			timed("delete", func() error {
				res, err := s.Save(ctx, ev)
				if err == nil && len(res.Deleted) != 1 {
					err = fmt.Errorf("deleted %d events, want 1", len(res.Deleted))
				}
				return err
			})
			failMu.Lock()
			deleted++
			failMu.Unlock()
		}
	})
	pending := func() (float64, error) {
		var age float64
		err := probe.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM clock_timestamp() - min(deleted_at)), 0)::float8 FROM keypackage_scrub`).Scan(&age)
		return age, err
	}
	probeStop := make(chan struct{})
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		for {
			select {
			case <-probeStop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			age, err := pending()
			if err != nil {
				fail(err)
				return
			}
			failMu.Lock()
			maxPending = max(maxPending, age)
			failMu.Unlock()
		}
	}()

	b.ResetTimer()
	time.Sleep(load.baseline)
	phase <- 1
	stats0 := s.rewrite.snapshot()
	close(deleting)
	time.Sleep(load.run)
	close(stopAll)
	wg.Wait()
	// Every deletion is scrubbed once the debt table is empty.
	drainStart := time.Now()
	for {
		age, err := pending()
		if err != nil {
			b.Fatal(err)
		}
		if age == 0 {
			break
		}
		if time.Since(drainStart) > load.within+30*time.Second {
			b.Errorf("deletions still not scrubbed %v after the load stopped (oldest %.1f s)", time.Since(drainStart), age)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	close(probeStop)
	<-probeDone
	b.StopTimer()
	st := s.rewrite.snapshot().since(stats0)

	for p, name := range []string{"baseline (no deletions)", "with deletions"} {
		b.Logf("%s:\n\t%s", name, strings.Join(lat[p].summary(), "\n\t"))
	}
	b.Logf("deletions: %d in %v; oldest unscrubbed deletion: %.1f s (sampled every 250 ms until all were scrubbed)",
		deleted, load.run, maxPending)
	b.Logf("rewrites: %s", st)
	holds, warns := rec.result()
	b.Logf("rewrite statements: %v; warnings: %v", holds.summary(), warns)
	for _, op := range []string{"read-author", "read-id", "read-kind", "write", "delete"} {
		b.ReportMetric(ms(lat[1].stat(op, 1)), op+"-max-ms")
		b.ReportMetric(ms(lat[1].stat(op, 0.99)), op+"-p99-ms")
	}
	b.ReportMetric(maxPending, "unscrubbed-max-s")
	b.ReportMetric(ms(st.maxHold), "hold-max-ms")
	if failure != nil {
		b.Errorf("operations failed; the first: %v", failure)
	}
}

// rewriteRecorder is a log handler that keeps how long each partition
// rewrite took (the rewriter logs it at debug level) and the warnings.
type rewriteRecorder struct {
	mu    sync.Mutex
	holds latencies
	warns map[string]int
}

func (h *rewriteRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *rewriteRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Level >= slog.LevelWarn {
		if h.warns == nil {
			h.warns = make(map[string]int)
		}
		h.warns[r.Message]++
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "took" {
			h.holds.add("rewrite", a.Value.Duration())
		}
		return true
	})
	return nil
}

func (h *rewriteRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *rewriteRecorder) WithGroup(string) slog.Handler      { return h }

func (h *rewriteRecorder) result() (*latencies, map[string]int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return &h.holds, maps.Clone(h.warns)
}

// kpTableSizeSQL is the size of the KeyPackage relations, with indexes and
// TOAST.
const kpTableSizeSQL = `pg_total_relation_size('keypackages') +
	(SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('keypackage_content'))`

func newRefHex() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// BenchmarkPartitionedKeyPackageLookups is the measurement behind not
// partitioning the keypackages table itself (docs/keypackage-scrub.md):
// the two lookups burrow_save makes, by id and by author's slot, in a
// PL/pgSQL function with burrow_save's plan_cache_mode = force_generic_plan,
// against a KeyPackage table of 50,000 rows hash-partitioned by author
// into 0 (a plain table), 16, 64 and 256 partitions.
//
//	go test ./storage/postgres -run '^$' -bench PartitionedKeyPackageLookups -benchtime 2000x -count 3
func BenchmarkPartitionedKeyPackageLookups(b *testing.B) {
	pg := testsvc.Postgres(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, parts := range []int{0, 16, 64, 256} {
		table := fmt.Sprintf("kp_%d", parts)
		ddl := fmt.Sprintf(`CREATE TABLE %s (id bytea NOT NULL, pubkey bytea NOT NULL, kind integer NOT NULL,
			slot_d bytea, content bytea NOT NULL, PRIMARY KEY (id, pubkey))`, table)
		if parts > 0 {
			ddl += " PARTITION BY HASH (pubkey)"
		}
		if _, err := conn.Exec(ctx, ddl); err != nil {
			b.Fatal(err)
		}
		for i := range parts {
			if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s_%d PARTITION OF %s FOR VALUES WITH (MODULUS %d, REMAINDER %d)`,
				table, i, table, parts, i)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf(`
			CREATE UNIQUE INDEX ON %[1]s (pubkey, kind, slot_d) WHERE slot_d IS NOT NULL;
			INSERT INTO %[1]s SELECT sha256(int8send(i)), sha256(int8send(i / 10)), 30443, int8send(i %% 10), '\x00'
			  FROM generate_series(1, 50000) AS i;
			ANALYZE %[1]s;
			CREATE FUNCTION look_%[1]s(p_id bytea, p_pubkey bytea) RETURNS boolean LANGUAGE plpgsql AS $fn$
			BEGIN
				RETURN EXISTS (SELECT 1 FROM %[1]s k WHERE k.id = p_id)
				    OR EXISTS (SELECT 1 FROM %[1]s k WHERE k.pubkey = p_pubkey AND k.kind = 30443 AND k.slot_d = '\x01');
			END
			$fn$;
			ALTER FUNCTION look_%[1]s SET plan_cache_mode = force_generic_plan;`, table)); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("partitions=%d", parts), func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				var found bool
				if err := conn.QueryRow(ctx, "SELECT look_"+table+"(sha256(int8send($1::bigint)), sha256(int8send($1::bigint / 10)))", i%50000+1).Scan(&found); err != nil || !found {
					b.Fatalf("lookup %d: %v, %v", i, found, err)
				}
			}
		})
	}
}
