package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// BenchmarkSave measures Save throughput with 8 concurrent savers, each
// waiting for its result, as 8 publishers waiting for their OK do. Events
// are kind 445 group messages (600 bytes of content, a fresh key each,
// spread over 16 groups) signed before the timer starts. The server keeps
// fsync and synchronous_commit on.
//
//	go test ./storage/postgres -run '^$' -bench BenchmarkSave -benchtime 4000x
func BenchmarkSave(b *testing.B) {
	for _, writers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			pg := testsvc.Postgres(b)
			s, err := postgres.Open(context.Background(), postgres.Config{URL: pg.URL, Writers: writers})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			evs := benchEvents(b, b.N)
			runSavers(b, pg.DataDir, func(ctx context.Context, ev *nostr.Event) error {
				_, err := s.Save(ctx, ev)
				return err
			}, evs)
		})
	}
}

// BenchmarkBaselineInsert is the yardstick for BenchmarkSave on a busy
// machine: the same events and savers, each event one autocommitted INSERT
// into an events table with an id key and a GIN tag index, as a generic
// relay store does, without any of Save's rules.
func BenchmarkBaselineInsert(b *testing.B) {
	pg := testsvc.Postgres(b)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE event (id text PRIMARY KEY, pubkey text NOT NULL, created_at bigint NOT NULL,
		kind integer NOT NULL, tags jsonb NOT NULL, content text NOT NULL, sig text NOT NULL, tagvalues text[]);
		CREATE INDEX ON event USING gin (tagvalues); CREATE INDEX ON event (created_at DESC)`); err != nil {
		b.Fatal(err)
	}
	evs := benchEvents(b, b.N)
	runSavers(b, pg.DataDir, func(ctx context.Context, ev *nostr.Event) error {
		tags, _ := json.Marshal(ev.Tags)
		_, err := pool.Exec(ctx, `INSERT INTO event VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
			ev.ID, ev.PubKey, int64(ev.CreatedAt), ev.Kind, tags, ev.Content, ev.Sig, []string{ev.Tags[0][1]})
		return err
	}, evs)
}

// runSavers saves evs from 8 goroutines and reports throughput and, since
// wall time on a shared machine says little, the CPU time spent per event by
// this process and by the PostgreSQL cluster (when its data directory, and
// so its postmaster, is known).
func runSavers(b *testing.B, dataDir string, save func(context.Context, *nostr.Event) error, evs []*nostr.Event) {
	ctx := context.Background()
	const savers = 8
	b.SetParallelism((savers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var next atomic.Int64
	pgCPU0, pgOK := clusterCPU(dataDir)
	selfCPU0 := selfCPU()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := save(ctx, evs[next.Add(1)-1]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64((selfCPU()-selfCPU0).Microseconds())/float64(b.N), "go-cpu-µs/event")
	if pgCPU1, ok := clusterCPU(dataDir); ok && pgOK {
		b.ReportMetric(float64((pgCPU1-pgCPU0).Microseconds())/float64(b.N), "pg-cpu-µs/event")
	}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clusterCPU sums the CPU time of the postmaster of dataDir, of its exited
// children and of its running ones, from /proc (Linux, 100 ticks a second).
func clusterCPU(dataDir string) (time.Duration, bool) {
	if dataDir == "" {
		return 0, false
	}
	pidFile, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	pm, err := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0])
	if err != nil {
		return 0, false
	}
	const tick = 10 * time.Millisecond
	stat := func(pid string) (ppid int, ticks int64, ok bool) {
		raw, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return 0, 0, false
		}
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		if len(f) < 15 {
			return 0, 0, false
		}
		ppid, _ = strconv.Atoi(f[1])
		for _, i := range []int{11, 12} { // utime, stime
			v, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += v
		}
		if pid == strconv.Itoa(pm) {
			for _, i := range []int{13, 14} { // cutime, cstime: children reaped
				v, _ := strconv.ParseInt(f[i], 10, 64)
				ticks += v
			}
		}
		return ppid, ticks, true
	}
	_, total, ok := stat(strconv.Itoa(pm))
	if !ok {
		return 0, false
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if ppid, t, ok := stat(p.Name()); ok && ppid == pm {
			total += t
		}
	}
	return time.Duration(total) * tick, true
}

func benchEvents(b *testing.B, n int) []*nostr.Event {
	evs := make([]*nostr.Event, n)
	content := make([]byte, 450) // base64 of 450 bytes is 600 characters
	for i := range evs {
		_, _ = rand.Read(content)
		sk := nostr.GeneratePrivateKey()
		pk, _ := nostr.GetPublicKey(sk)
		ev := &nostr.Event{
			PubKey:    pk,
			CreatedAt: nostr.Now(),
			Kind:      445,
			Tags:      nostr.Tags{{"h", fmt.Sprintf("%064x", i%16)}},
			Content:   fmt.Sprintf("%x", content)[:600],
		}
		if err := ev.Sign(sk); err != nil {
			b.Fatal(err)
		}
		evs[i] = ev
	}

	return evs
}

func openBench(b *testing.B) *postgres.Store {
	b.Helper()
	s, err := postgres.Open(context.Background(), postgres.Config{URL: testsvc.Postgres(b).URL})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkSlotReplacements also reports the PostgreSQL cluster's CPU time
// per replacement (its backends, the scrub rewriter's, autovacuum), which
// says more than the rate on a shared machine.
func BenchmarkSlotReplacements(b *testing.B) {
	pg := testsvc.Postgres(b)
	s, err := postgres.Open(context.Background(), postgres.Config{URL: pg.URL})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	before, ok := clusterCPU(pg.DataDir)
	storetest.BenchmarkSlotReplacements(b, s)
	if after, ok2 := clusterCPU(pg.DataDir); ok && ok2 {
		b.ReportMetric(float64((after-before).Microseconds())/float64(b.N), "pg-cpu-µs/op")
	}
}

func BenchmarkKeyPackageDeletions(b *testing.B) {
	storetest.BenchmarkKeyPackageDeletions(b, openBench(b))
}

func BenchmarkGroupSave(b *testing.B) {
	for _, groups := range []int{1, 100} {
		for _, seq := range []bool{true, false} {
			b.Run(fmt.Sprintf("groups=%d/sequencing=%v", groups, seq), func(b *testing.B) {
				s, err := postgres.Open(context.Background(), postgres.Config{URL: testsvc.Postgres(b).URL, DisableSequencing: !seq})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				storetest.BenchmarkGroupSave(b, s, groups)
			})
		}
	}
}
