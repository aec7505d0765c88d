package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/fasthttp/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/nbd-wtf/go-nostr"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

// TestRunAgainstStockBaseline proves the harness end to end: the real baseline binary, built and
// started on each store, acknowledges every event the harness sends. On PostgreSQL it also
// proves the scratch database comes and goes with TempDatabase.
func TestRunAgainstStockBaseline(t *testing.T) {
	tests := []struct {
		name string
		// database returns the baseline's --database-url ("" for memory) and a check to run
		// after the baseline has stopped.
		database func(t *testing.T, ctx context.Context) (dbURL string, after func())
	}{
		{
			name:     "memory",
			database: func(*testing.T, context.Context) (string, func()) { return "", func() {} },
		},
		{
			name: "postgresql",
			database: func(t *testing.T, ctx context.Context) (string, func()) {
				admin := testsvc.Postgres(t).URL
				dbURL, drop, err := TempDatabase(ctx, admin)
				if err != nil {
					t.Fatalf("TempDatabase: %v", err)
				}
				return dbURL, func() {
					if err := drop(ctx); err != nil {
						t.Fatalf("drop: %v", err)
					}
					if conn, err := pgx.Connect(ctx, dbURL); err == nil {
						conn.Close(ctx)
						t.Fatalf("scratch database %s still accepts connections after drop", dbURL)
					}
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			dbURL, after := tc.database(t, ctx)
			url, stop, err := StartBaseline(ctx, "../baseline", dbURL)
			if err != nil {
				t.Fatalf("StartBaseline: %v", err)
			}
			res, err := Run(ctx, Config{URL: url, Events: 200, Conns: 2})
			stop()
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Events != 200 || res.Accepted != 200 || res.Failures != 0 {
				t.Fatalf("events %d, accepted %d, failures %d (%v); want 200 accepted, 0 failures",
					res.Events, res.Accepted, res.Failures, res.FailureSamples)
			}
			if res.Conns != 2 || res.P50 <= 0 || res.P99 < res.P50 || res.EventsPerSec <= 0 {
				t.Fatalf("implausible result: %+v", res)
			}
			after()
		})
	}
}

func TestStartBaselineFailsClearly(t *testing.T) {
	tests := []struct {
		name, dir, dbURL string
	}{
		{name: "no such module directory", dir: t.TempDir() + "/missing"},
		{name: "unreachable database", dir: "../baseline", dbURL: "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			url, stop, err := StartBaseline(ctx, tc.dir, tc.dbURL)
			if err == nil {
				stop()
				t.Fatalf("StartBaseline started %s; want an error", url)
			}
			if !errors.Is(err, ErrBaseline) {
				t.Fatalf("err = %v; want ErrBaseline", err)
			}
		})
	}
}

// fakeRelay answers each EVENT with what answer decides for the n-th event (counting from 0)
// it received, after sending any extra frames answer returns first.
type fakeAnswer func(n int64, id string) (extra []string, ok bool, reason string, replyID string)

func fakeRelay(t *testing.T, answer fakeAnswer) string {
	t.Helper()
	var count atomic.Int64
	upgrader := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			var msg []json.RawMessage
			var evt nostr.Event
			if json.Unmarshal(data, &msg) != nil || len(msg) != 2 || json.Unmarshal(msg[1], &evt) != nil {
				t.Errorf("fake relay got a malformed frame: %.80s", data)
				return
			}
			if ok, err := evt.CheckSignature(); !ok || err != nil {
				t.Errorf("fake relay got a badly signed event %s: %v", evt.ID, err)
			}
			extra, ok, reason, replyID := answer(count.Add(1)-1, evt.ID)
			for _, e := range extra {
				if c.WriteMessage(websocket.TextMessage, []byte(e)) != nil {
					return
				}
			}
			reply, _ := json.Marshal([]any{"OK", replyID, ok, reason})
			if c.WriteMessage(websocket.TextMessage, reply) != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func TestRunCountsAnswers(t *testing.T) {
	tests := []struct {
		name         string
		answer       fakeAnswer
		keep         int
		wantAccepted int
		wantFailures int
		wantSamples  int
		wantErr      bool
	}{
		{
			name:         "all accepted, with seq reasons",
			answer:       func(n int64, id string) ([]string, bool, string, string) { return nil, true, "seq:1", id },
			wantAccepted: 40,
		},
		{
			name: "every fourth refused, samples capped",
			answer: func(n int64, id string) ([]string, bool, string, string) {
				if n%4 == 0 {
					return nil, false, "blocked: test", id
				}
				return nil, true, "", id
			},
			keep:         3,
			wantAccepted: 30,
			wantFailures: 10,
			wantSamples:  3,
		},
		{
			name: "notices and auth challenges are skipped",
			answer: func(n int64, id string) ([]string, bool, string, string) {
				return []string{`["NOTICE","hello"]`, `["AUTH","challenge"]`, `[ "OK" ,`}, true, "", id
			},
			wantAccepted: 40,
		},
		{
			name: "an OK for another event aborts the run",
			answer: func(n int64, id string) ([]string, bool, string, string) {
				if n == 5 {
					return nil, true, "", strings.Repeat("0", 64)
				}
				return nil, true, "", id
			},
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := fakeRelay(t, tc.answer)
			res, err := Run(context.Background(), Config{URL: url, Events: 40, Conns: 3, KeepFailures: tc.keep, ContentBytes: 64})
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Run succeeded (%+v); want an error", res)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Accepted != tc.wantAccepted || res.Failures != tc.wantFailures || len(res.FailureSamples) != tc.wantSamples {
				t.Fatalf("accepted %d failures %d samples %d; want %d %d %d",
					res.Accepted, res.Failures, len(res.FailureSamples), tc.wantAccepted, tc.wantFailures, tc.wantSamples)
			}
			for _, s := range res.FailureSamples {
				if !strings.HasSuffix(s, ": blocked: test") {
					t.Errorf("sample %q lacks the relay's reason", s)
				}
			}
		})
	}
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    Config
		wantErr bool
	}{
		{
			name: "zero fields take defaults",
			cfg:  Config{URL: "ws://127.0.0.1:1"},
			want: Config{URL: "ws://127.0.0.1:1", Events: DefaultEvents, Conns: DefaultConns, ContentBytes: DefaultContentBytes,
				Groups: DefaultGroups, OKTimeout: DefaultOKTimeout, KeepFailures: DefaultKeepFailures},
		},
		{
			name: "set fields are kept",
			cfg:  Config{URL: "wss://x", Events: 5, Conns: 1, ContentBytes: 8, Groups: 2, OKTimeout: time.Second, KeepFailures: 1, OnlyGroupEvents: true},
			want: Config{URL: "wss://x", Events: 5, Conns: 1, ContentBytes: 8, Groups: 2, OKTimeout: time.Second, KeepFailures: 1, OnlyGroupEvents: true},
		},
		{name: "empty URL", cfg: Config{}, wantErr: true},
		{name: "http URL", cfg: Config{URL: "http://127.0.0.1:1"}, wantErr: true},
		{name: "negative events", cfg: Config{URL: "ws://x", Events: -1}, wantErr: true},
		{name: "negative timeout", cfg: Config{URL: "ws://x", OKTimeout: -time.Second}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.withDefaults()
			if tc.wantErr {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("err = %v; want ErrConfig", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestPrepareMixAndShape(t *testing.T) {
	tests := []struct {
		name      string
		only445   bool
		want445   int
		wantText  int
		wantBytes int
	}{
		{name: "alternating", want445: 5, wantText: 5, wantBytes: 600},
		{name: "only group events", only445: true, want445: 10, wantBytes: 600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Config{URL: "ws://x", Events: 10, OnlyGroupEvents: tc.only445}.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			evs, err := prepare(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[int]int{}
			for _, p := range evs {
				var msg []json.RawMessage
				var evt nostr.Event
				if err := json.Unmarshal(p.frame, &msg); err != nil || string(msg[0]) != `"EVENT"` || json.Unmarshal(msg[1], &evt) != nil {
					t.Fatalf("frame is not an EVENT message: %.80s", p.frame)
				}
				if ok, err := evt.CheckSignature(); !ok || err != nil || evt.ID != p.id {
					t.Fatalf("event %s does not verify (%v) or id differs from %s", evt.ID, err, p.id)
				}
				if len(evt.Content) != tc.wantBytes {
					t.Errorf("content is %d bytes; want %d", len(evt.Content), tc.wantBytes)
				}
				if evt.Kind == 445 && evt.Tags.GetFirst([]string{"h", ""}) == nil {
					t.Errorf("kind 445 without an h tag: %v", evt.Tags)
				}
				kinds[evt.Kind]++
			}
			if kinds[445] != tc.want445 || kinds[1] != tc.wantText {
				t.Fatalf("kinds %v; want %d of 445 and %d of 1", kinds, tc.want445, tc.wantText)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    int
		want time.Duration
	}{
		{name: "empty", in: nil, p: 50, want: 0},
		{name: "one", in: ms(7), p: 99, want: 7 * time.Millisecond},
		{name: "median of unsorted", in: ms(5, 1, 4, 2, 3), p: 50, want: 3 * time.Millisecond},
		{name: "p99 of 100 is the 99th", in: ms(func() []int {
			v := make([]int, 100)
			for i := range v {
				v[i] = 100 - i
			}
			return v
		}()...), p: 99, want: 99 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.in, tc.p); got != tc.want {
				t.Fatalf("percentile(%d) = %v; want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestTableRatios(t *testing.T) {
	rows := []Row{
		{Name: "khatru/memory", Result: Result{Events: 100, Conns: 8, EventsPerSec: 1000, P50: time.Millisecond, P99: 4 * time.Millisecond}},
		{Name: "burrow/sqlite", Baseline: "khatru/memory", Result: Result{Events: 100, Conns: 8, EventsPerSec: 1500, P99: 2 * time.Millisecond}},
		{Name: "orphan", Baseline: "missing", Result: Result{EventsPerSec: 1}},
	}
	var buf bytes.Buffer
	if err := Table(&buf, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	tests := []struct {
		line int
		want []string
	}{
		{line: 0, want: []string{"target", "events/s", "ev/s ratio", "p99 ratio"}},
		{line: 1, want: []string{"khatru/memory", "1000", "4.00"}},
		{line: 2, want: []string{"burrow/sqlite", "1500", "1.50x", "0.50x", "khatru/memory"}},
		{line: 3, want: []string{"orphan", "?", "missing"}},
	}
	if len(lines) != len(tests) {
		t.Fatalf("table has %d lines; want %d:\n%s", len(lines), len(tests), buf.String())
	}
	for _, tc := range tests {
		for _, w := range tc.want {
			if !strings.Contains(lines[tc.line], w) {
				t.Errorf("line %d %q lacks %q", tc.line, lines[tc.line], w)
			}
		}
	}
}

func TestVerifyCeiling(t *testing.T) {
	tests := []struct {
		name     string
		d        time.Duration
		positive bool
	}{
		{name: "short run verifies something", d: 200 * time.Millisecond, positive: true},
		{name: "zero duration", d: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := VerifyCeiling(context.Background(), tc.d)
			if (got > 0) != tc.positive {
				t.Fatalf("VerifyCeiling(%v) = %v; want positive %t", tc.d, got, tc.positive)
			}
		})
	}
}
