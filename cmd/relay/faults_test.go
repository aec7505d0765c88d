package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
)

// answerBound is how long a writer may wait for its OK while the database
// is away: the relay must answer (error:), not hang.
const answerBound = 15 * time.Second

// faultWriters publish from several connections, each waiting for its OK,
// and record what the relay answered.
type faultWriters struct {
	acked    sync.Map // event id -> true, for OK true
	acks     atomic.Int64
	errors   atomic.Int64 // OK false "error: ..."
	others   sync.Map     // other refusals, message -> count
	slowest  atomic.Int64 // longest wait for an OK, nanoseconds
	failures atomic.Int64 // no answer within answerBound, or the connection lost
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func startFaultWriters(t *testing.T, url string, conns int) *faultWriters {
	ctx, cancel := context.WithCancel(context.Background())
	w := &faultWriters{cancel: cancel}
	for range conns {
		w.wg.Go(func() {
			c, err := dial(ctx, url)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer c.Close()
			sk := nostr.GeneratePrivateKey()
			for n := 0; ctx.Err() == nil; n++ {
				ev := nostr.Event{Kind: 1, CreatedAt: nostr.Now(), Content: fmt.Sprintf("under fault %d", n)}
				ev.Sign(sk)
				began := time.Now()
				ok, msg, err := c.publish(ev, answerBound)
				if d := int64(time.Since(began)); d > w.slowest.Load() {
					w.slowest.Store(d)
				}
				switch {
				case err != nil:
					w.failures.Add(1)
					return
				case ok:
					w.acked.Store(ev.ID, true)
					w.acks.Add(1)
				case strings.HasPrefix(msg, "error:"):
					w.errors.Add(1)
					time.Sleep(20 * time.Millisecond) // as a client would back off
				default:
					v, _ := w.others.LoadOrStore(msg, new(atomic.Int64))
					v.(*atomic.Int64).Add(1)
				}
			}
		})
	}
	return w
}

func (w *faultWriters) stop() {
	w.cancel()
	w.wg.Wait()
}

// ready reports whether GET /readyz answers 200.
func ready(t *testing.T, httpURL string) bool {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(httpURL + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestPostgresRestartUnderWriteLoad (issue 14 item 10): PostgreSQL stops
// while four connections publish. Meanwhile /readyz reports not ready and
// every EVENT gets an answer, "error:" while the database is away, never
// a hang; when PostgreSQL is back the relay reconnects by itself, reports
// ready, and takes events again; every event it acknowledged is stored.
func TestPostgresRestartUnderWriteLoad(t *testing.T) {
	pg := testsvc.PostgresServer(t)
	c := testConfig(t)
	c.DatabaseURL = pg.URL()
	// Rate limits out of the way: the writers publish as fast as answers
	// come.
	c.Limits.EventRate, c.Limits.EventBurst = 1e6, 1e6
	c.Limits.ConnEventRate, c.Limits.ConnEventBurst = 1e6, 1e6
	ws := startInProcess(t, c)
	httpURL := "http" + strings.TrimPrefix(ws, "ws")
	w := startFaultWriters(t, ws, 4)
	defer w.stop()

	waitUntil(t, "acknowledged events before the restart", func() bool { return w.acks.Load() >= 200 })
	if !ready(t, httpURL) {
		t.Fatal("/readyz not ready with the database up")
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	waitUntil(t, "/readyz not ready", func() bool { return !ready(t, httpURL) })
	waitUntil(t, "error: answers", func() bool { return w.errors.Load() >= 4 })
	acksWhileDown := w.acks.Load()
	time.Sleep(2 * time.Second)
	if !ready(t, httpURL) && w.acks.Load() != acksWhileDown {
		t.Fatalf("%d events acknowledged while the database was down", w.acks.Load()-acksWhileDown)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("database down for %v", time.Since(stopped).Round(time.Millisecond))
	waitUntil(t, "/readyz ready again", func() bool { return ready(t, httpURL) })
	after := w.acks.Load()
	waitUntil(t, "events acknowledged after the restart", func() bool { return w.acks.Load() >= after+200 })
	w.stop()

	var others []string
	w.others.Range(func(k, v any) bool {
		others = append(others, fmt.Sprintf("%q x%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	t.Logf("%d acknowledged, %d error: answers, slowest answer %v, other answers %v",
		w.acks.Load(), w.errors.Load(), time.Duration(w.slowest.Load()).Round(time.Millisecond), others)
	if w.failures.Load() > 0 {
		t.Fatalf("%d publishes got no answer within %v (or lost their connection)", w.failures.Load(), answerBound)
	}
	if len(others) > 0 {
		t.Fatalf("answers other than OK true and error:: %v", others)
	}
	assertAllStored(t, ws, &w.acked)
}

// TestFullDiskAnswersErrorAndRecovers (issue 14 item 10): with embedded
// SQLite on a file system that fills up, an EVENT that does not fit is
// answered "error: the relay's storage is full, try again later" and is
// not stored; once space is freed the same event is accepted.
func TestFullDiskAnswersErrorAndRecovers(t *testing.T) {
	dir := testsvc.SmallFS(t, "8m")
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testConfig(t)
	c.DataDir = filepath.Join(dir, "data")
	c.Limits.EventRate, c.Limits.EventBurst = 1e6, 1e6
	c.Limits.ConnEventRate, c.Limits.ConnEventBurst = 1e6, 1e6
	ws := startInProcess(t, c)
	cl := mustDial(t, ws)
	sk := nostr.GeneratePrivateKey()
	var refused nostr.Event
	for i := 0; ; i++ {
		if i > 500 {
			t.Fatal("the file system never filled up")
		}
		ev := nostr.Event{Kind: 1, CreatedAt: nostr.Now(), Content: strings.Repeat("x", 60<<10) + strconv.Itoa(i)}
		ev.Sign(sk)
		ok, msg, err := cl.publish(ev, answerBound)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			continue
		}
		if msg != "error: the relay's storage is full, try again later" {
			t.Fatalf("event %d refused with %q", i, msg)
		}
		refused = ev
		break
	}
	if evs, err := cl.query(nostr.Filter{IDs: []string{refused.ID}}, answerBound); err != nil || len(evs) != 0 {
		t.Fatalf("the refused event is served (%d, %v)", len(evs), err)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if ok, msg, err := cl.publish(refused, answerBound); err != nil || !ok {
		t.Fatalf("after space was freed: %v %q %v", ok, msg, err)
	}
}
