package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/conformance"
	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/policy"
	"github.com/nbd-wtf/go-nostr"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

// backends are the storage configurations every integration test runs on.
func backends(t *testing.T) []struct {
	name string
	cfg  func(t *testing.T) config
} {
	return []struct {
		name string
		cfg  func(t *testing.T) config
	}{
		{"sqlite", func(t *testing.T) config {
			c := testConfig(t)
			c.DataDir = t.TempDir()
			return c
		}},
		{"postgres", func(t *testing.T) config {
			c := testConfig(t)
			c.DatabaseURL = testsvc.Postgres(t).URL
			return c
		}},
	}
}

func testConfig(t *testing.T) config {
	t.Helper()
	// Its own data directory: the default ./data would be the package's.
	c, err := parseServeConfig([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startInProcess runs the real relay wiring on a loopback port and returns
// its websocket URL.
func startInProcess(t *testing.T, c config) string {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := startRelay(ctx, c, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := r.Close(sctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return "ws://" + r.Addr
}

// TestConformanceSuitePassesOnBothBackends runs `relay conformance` checks
// against Burrow on embedded SQLite and on PostgreSQL.
func TestConformanceSuitePassesOnBothBackends(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			url := startInProcess(t, b.cfg(t))
			// A bound against a hang only: the suite's own checks bound what
			// they test; on a loaded machine (-race, other work) the whole
			// run takes minutes.
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			report := conformance.Run(ctx, conformance.Config{URL: url, Timeout: 15 * time.Second})
			if len(report.Results) == 0 {
				t.Fatal("conformance ran no checks")
			}
			for _, r := range report.Results {
				if r.Status != conformance.StatusPass {
					t.Errorf("%s %s: %s %s", r.ID, r.Name, r.Status, r.Detail)
				}
			}
			// What `relay conformance` announces it will write stays true.
			t.Logf("wrote %d events, %d bytes", report.EventsWritten, report.BytesWritten)
			within := func(got, approx int64) bool { return got >= approx*3/4 && got <= approx*5/4 }
			if !within(report.EventsWritten, conformance.ApproxEventsWritten) || !within(report.BytesWritten, conformance.ApproxBytesWritten) {
				t.Errorf("the suite wrote %d events and %d bytes; it announces about %d and %d",
					report.EventsWritten, report.BytesWritten, conformance.ApproxEventsWritten, conformance.ApproxBytesWritten)
			}
		})
	}
}

// TestConformanceRefusesAMarmotOnlyRelay: against a relay whose NIP-11 says
// it accepts only some kinds, the suite stops with one failing line saying
// why, instead of failing most checks, and writes nothing.
func TestConformanceRefusesAMarmotOnlyRelay(t *testing.T) {
	c := testConfig(t)
	c.Kinds = policy.MarmotOnly()
	url := startInProcess(t, c)
	report := conformance.Run(context.Background(), conformance.Config{URL: url, Timeout: 15 * time.Second})
	if len(report.Results) != 1 || report.Results[0].Status != conformance.StatusFail ||
		!strings.Contains(report.Results[0].Detail, "--kinds all") || report.EventsWritten != 0 {
		t.Fatalf("report %+v, want one failed result naming --kinds all and nothing written", report)
	}
}

// buildRelay compiles the relay binary once per test binary run.
func buildRelay(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "relay")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// relayProc is the relay binary running as a child process.
type relayProc struct {
	cmd     *exec.Cmd
	addr    string
	done    chan struct{} // closed when the process has exited
	waitErr error         // its exit status, set before done is closed
}

func startProcess(t *testing.T, bin, addr string, args ...string) *relayProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--listen", addr}, args...)...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &relayProc{cmd: cmd, addr: addr, done: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("relay exited before becoming ready: %v", p.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("relay did not become ready within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// publishUntilStopped publishes from several connections, each waiting for
// its OK, and records every event acknowledged with OK true.
func publishUntilStopped(ctx context.Context, url string, conns int, acked *sync.Map) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dial(ctx, url)
			if err != nil {
				return
			}
			defer c.Close()
			sk := nostr.GeneratePrivateKey()
			for n := 0; ctx.Err() == nil; n++ {
				ev := nostr.Event{Kind: 1, CreatedAt: nostr.Now(), Content: fmt.Sprintf("durability %d", n)}
				ev.Sign(sk)
				ok, _, err := c.publish(ev, 10*time.Second)
				if err != nil {
					return // connection gone: the relay died
				}
				if ok {
					acked.Store(ev.ID, true)
				}
			}
		}()
	}
	return &wg
}

// assertAllStored reconnects and checks every acknowledged id is present.
func assertAllStored(t *testing.T, url string, acked *sync.Map) int {
	t.Helper()
	var ids []string
	acked.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	found := map[string]bool{}
	for start := 0; start < len(ids); start += 400 {
		end := min(start+400, len(ids))
		evs, err := c.query(nostr.Filter{IDs: ids[start:end], Limit: end - start}, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			found[ev.ID] = true
		}
	}
	missing := 0
	for _, id := range ids {
		if !found[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged events are missing after restart", missing, len(ids))
	}
	return len(ids)
}

// TestKillNineKeepsEveryAcknowledgedEvent kills the relay process with
// SIGKILL under write load, restarts it on the same storage and finds every
// event that got OK true.
func TestKillNineKeepsEveryAcknowledgedEvent(t *testing.T) {
	bin := buildRelay(t)
	for _, b := range []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"sqlite", func(t *testing.T) []string { return []string{"--data-dir", t.TempDir()} }},
		{"sqlite-normal", func(t *testing.T) []string {
			return []string{"--data-dir", t.TempDir(), "--sqlite-synchronous", "normal"}
		}},
		{"postgres", func(t *testing.T) []string { return []string{"--database-url", testsvc.Postgres(t).URL} }},
	} {
		t.Run(b.name, func(t *testing.T) {
			args := b.args(t)
			addr := freeAddr(t)
			p := startProcess(t, bin, addr, args...)
			var acked sync.Map
			ctx, cancel := context.WithCancel(context.Background())
			wg := publishUntilStopped(ctx, "ws://"+addr, 4, &acked)
			waitForAcks(t, &acked, 300)
			if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-p.done
			cancel()
			wg.Wait()
			startProcess(t, bin, addr, args...)
			n := assertAllStored(t, "ws://"+addr, &acked)
			t.Logf("%s: %d acknowledged events all present after kill -9", b.name, n)
		})
	}
}

// TestSIGTERMLetsInFlightWritesFinish stops the relay with SIGTERM under
// write load: it exits 0 and every acknowledged event is stored.
func TestSIGTERMLetsInFlightWritesFinish(t *testing.T) {
	bin := buildRelay(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	p := startProcess(t, bin, addr, "--data-dir", dir)
	var acked sync.Map
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg := publishUntilStopped(ctx, "ws://"+addr, 4, &acked)
	waitForAcks(t, &acked, 200)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.waitErr != nil {
			t.Fatalf("relay exited with %v after SIGTERM, want status 0", p.waitErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("relay did not exit within 20 s of SIGTERM")
	}
	cancel()
	wg.Wait()
	startProcess(t, bin, addr, "--data-dir", dir)
	assertAllStored(t, "ws://"+addr, &acked)
}

func waitForAcks(t *testing.T, acked *sync.Map, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		count := 0
		acked.Range(func(_, _ any) bool { count++; return count < n })
		if count >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d events acknowledged within 60 s", count)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// TestLogsNeverContainEventContentOrKeys runs the relay with debug logging,
// drives accepted, refused and broken events through it, and checks that no
// content, signature or secret key reaches the log.
func TestLogsNeverContainEventContentOrKeys(t *testing.T) {
	var logs syncBuffer
	c := testConfig(t)
	c.DataDir = t.TempDir()
	c.LogLevel = slog.LevelDebug
	r, err := startRelay(context.Background(), c, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	client, err := dial(context.Background(), "ws://"+r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	sk := nostr.GeneratePrivateKey()
	secretContent := "do-not-log-" + sk[:16]
	var sigs []string
	for i, mutate := range []func(*nostr.Event){
		func(*nostr.Event) {},                               // accepted
		func(e *nostr.Event) { e.Content += "x" },           // wrong id
		func(e *nostr.Event) { e.Sig = e.Sig[:126] + "00" }, // bad signature
		func(e *nostr.Event) { e.Tags = nostr.Tags{{"-"}} }, // protected, no AUTH
	} {
		ev := nostr.Event{Kind: 1, CreatedAt: nostr.Now(), Content: fmt.Sprintf("%s %d", secretContent, i)}
		ev.Sign(sk)
		mutate(&ev)
		sigs = append(sigs, ev.Sig)
		if _, _, err := client.publish(ev, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "relay listening") {
		t.Fatalf("the log captured nothing useful: %q", out)
	}
	for _, secret := range append([]string{secretContent, sk}, sigs...) {
		if strings.Contains(out, secret) {
			t.Fatalf("log contains %q:\n%s", secret, out)
		}
	}
}
