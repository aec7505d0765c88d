package conformance

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

func TestCheckIDsAreUniqueAndNamed(t *testing.T) {
	idForm := regexp.MustCompile(`^[a-z0-9]+\.[a-z0-9-]+$`)
	seen := map[string]bool{}
	checks := Checks()
	if len(checks) < 40 {
		t.Fatalf("suite has %d checks, want at least 40", len(checks))
	}
	for _, c := range checks {
		if !idForm.MatchString(c.ID) {
			t.Errorf("check id %q is not of the form group.name", c.ID)
		}
		if seen[c.ID] {
			t.Errorf("check id %q is used twice", c.ID)
		}
		seen[c.ID] = true
		if strings.TrimSpace(c.Name) == "" {
			t.Errorf("check %q has no name", c.ID)
		}
	}
	for _, c := range suite() {
		if c.run == nil {
			t.Errorf("check %q has no run function", c.id)
		}
	}
}

func TestFailedCounts(t *testing.T) {
	tests := []struct {
		name     string
		statuses []Status
		want     int
	}{
		{"empty", nil, 0},
		{"all pass", []Status{StatusPass, StatusPass}, 0},
		{"skips are not failures", []Status{StatusSkip, StatusPass}, 0},
		{"mixed", []Status{StatusFail, StatusPass, StatusFail, StatusSkip}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Report
			for i, s := range tt.statuses {
				r.Results = append(r.Results, Result{ID: "x.y" + string(rune('a'+i)), Status: s})
			}
			if got := r.Failed(); got != tt.want {
				t.Errorf("Failed() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	tests := []struct {
		name      string
		report    Report
		wantLines []string
		wantNot   []string
	}{
		{
			name:      "empty report",
			report:    Report{},
			wantLines: []string{"ID  STATUS  NAME  DETAIL", "0 checks: 0 passed, 0 failed, 0 skipped"},
		},
		{
			name: "rows are aligned and summarised",
			report: Report{Results: []Result{
				{ID: "nip01.ok", Name: "Sends OK", Status: StatusPass},
				{ID: "nip45.count", Name: "COUNT", Status: StatusSkip, Detail: "NIP-45 not advertised in NIP-11"},
				{ID: "marmot.slow-consumer", Name: "Slow", Status: StatusFail, Detail: "publisher stalled"},
			}},
			wantLines: []string{
				"nip01.ok              pass    Sends OK",
				"nip45.count           skip    COUNT     NIP-45 not advertised in NIP-11",
				"marmot.slow-consumer  fail    Slow      publisher stalled",
				"3 checks: 1 passed, 1 failed, 1 skipped",
			},
		},
		{
			name: "relay text cannot break a row",
			report: Report{Results: []Result{
				{ID: "a.b", Name: "n", Status: StatusFail, Detail: "line one\nline two\tand\rmore"},
			}},
			wantLines: []string{"a.b  fail    n     line one line two and more"},
			wantNot:   []string{"\nline two"},
		},
		{
			name: "long details are cut",
			report: Report{Results: []Result{
				{ID: "a.b", Name: "n", Status: StatusFail, Detail: strings.Repeat("x", 500)},
			}},
			wantLines: []string{strings.Repeat("x", 200) + "…"},
			wantNot:   []string{strings.Repeat("x", 201)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.report.WriteTable(&buf); err != nil {
				t.Fatalf("WriteTable: %v", err)
			}
			out := buf.String()
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			if want := len(tt.report.Results) + 2; len(lines) != want {
				t.Errorf("got %d lines, want %d:\n%s", len(lines), want, out)
			}
			for _, want := range tt.wantLines {
				found := false
				for _, l := range lines {
					if strings.TrimRight(l, " ") == want || strings.Contains(l, want) {
						found = true
					}
				}
				if !found {
					t.Errorf("no line %q in:\n%s", want, out)
				}
			}
			for _, bad := range tt.wantNot {
				if strings.Contains(out, bad) {
					t.Errorf("output contains %q:\n%s", bad, out)
				}
			}
		})
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteTableReportsWriteErrors(t *testing.T) {
	r := Report{Results: []Result{{ID: "a.b", Status: StatusPass}}}
	if err := r.WriteTable(failingWriter{}); err == nil {
		t.Fatal("WriteTable to a failing writer returned nil")
	}
}

func TestRunUnknownCheckID(t *testing.T) {
	// Only unknown ids are selected, so Run never touches the network.
	rep := Run(context.Background(), Config{URL: "ws://127.0.0.1:1", Checks: []string{"nope.nothing"}})
	if len(rep.Results) != 1 {
		t.Fatalf("got %d results, want 1", len(rep.Results))
	}
	if r := rep.Results[0]; r.ID != "nope.nothing" || r.Status != StatusFail {
		t.Errorf("got %+v, want a failed result for the unknown id", r)
	}
}

func TestRunOneOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		run        func(context.Context, *env) (string, error)
		wantStatus Status
		wantDetail string
	}{
		{"pass with note", func(context.Context, *env) (string, error) { return "accepted", nil }, StatusPass, "accepted"},
		{"fail", func(context.Context, *env) (string, error) { return "", errors.New("bad order") }, StatusFail, "bad order"},
		{"skip keeps its reason", func(context.Context, *env) (string, error) {
			return "", skipf("NIP-%02d not advertised", 45)
		}, StatusSkip, "NIP-45 not advertised"},
		{"wrapped skip is still a skip", func(context.Context, *env) (string, error) {
			return "", errors.Join(skipf("no NIP-11"))
		}, StatusSkip, "no NIP-11"},
		{"panic is a failure", func(context.Context, *env) (string, error) { panic("boom") }, StatusFail, "check panicked: boom"},
		{"deadline is applied", func(ctx context.Context, _ *env) (string, error) {
			if _, ok := ctx.Deadline(); !ok {
				return "", errors.New("no deadline")
			}
			return "", nil
		}, StatusPass, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &env{cfg: Config{Timeout: time.Second}}
			got := runOne(context.Background(), e, check{id: "t.t", name: "t", run: tt.run})
			if got.Status != tt.wantStatus || got.Detail != tt.wantDetail {
				t.Errorf("got %s %q, want %s %q", got.Status, got.Detail, tt.wantStatus, tt.wantDetail)
			}
		})
	}
}

func TestRunOneCancelledContextSkips(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	got := runOne(ctx, &env{cfg: Config{Timeout: time.Second}}, check{id: "t.t", run: func(context.Context, *env) (string, error) {
		called = true
		return "", nil
	}})
	if got.Status != StatusSkip || got.Detail == "" || called {
		t.Errorf("got %s %q (called %t), want a skip with a reason and no call", got.Status, got.Detail, called)
	}
}

// Checks that depend on NIP-11 claims skip, with the reason, before touching the relay.
func TestSkipsFollowNIP11(t *testing.T) {
	tests := []struct {
		name    string
		info    *relayInfo
		infoErr error
		run     func(context.Context, *env) (string, error)
		reason  string
	}{
		{"count without NIP-45", &relayInfo{SupportedNIPs: []int{1, 11}}, nil, checkCount,
			"NIP-45 not advertised in NIP-11 supported_nips"},
		{"count without a document", nil, errors.New("HTTP 404"), checkCount,
			"NIP-45 support unknown: NIP-11 document unavailable (HTTP 404)"},
		{"no max_subscriptions", &relayInfo{SupportedNIPs: []int{1}}, nil, checkMaxSubscriptions,
			"max_subscriptions not advertised in NIP-11 limitation"},
		{"max_subscriptions too large to probe", &relayInfo{MaxSubscriptions: 5000}, nil, checkMaxSubscriptions,
			"max_subscriptions 5000 is above the 1000 this check opens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &env{cfg: Config{URL: "ws://127.0.0.1:1"}, info: tt.info, infoErr: tt.infoErr}
			_, err := tt.run(context.Background(), e)
			if !isSkip(err) || err.Error() != tt.reason {
				t.Errorf("got %v (skip %t), want skip %q", err, isSkip(err), tt.reason)
			}
		})
	}
}

func TestHTTPURL(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"ws://127.0.0.1:3334", "http://127.0.0.1:3334", false},
		{"wss://relay.example/path", "https://relay.example/path", false},
		{"http://127.0.0.1:3334", "http://127.0.0.1:3334", false},
		{"ftp://x", "", true},
		{"://bad", "", true},
	}
	for _, tt := range tests {
		got, err := httpURL(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("httpURL(%q) = %q, %v; want %q, error %t", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestFetchInfo(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		wantErr  string
		wantNIPs []int
		wantMax  int
	}{
		{"well-formed", 200, `{"name":"r","supported_nips":[1,11,45],"limitation":{"max_subscriptions":20}}`, "", []int{1, 11, 45}, 20},
		{"minimal", 200, `{}`, "", nil, 0},
		{"not found", 404, `nope`, "HTTP 404", nil, 0},
		{"not an object", 200, `[1,2]`, "not a JSON object", nil, 0},
		{"nips not integers", 200, `{"supported_nips":["1"]}`, "supported_nips is not an array of integers", nil, 0},
		{"limitation not an object", 200, `{"limitation":3}`, "limitation is not an object", nil, 0},
		{"max_subscriptions not an integer", 200, `{"limitation":{"max_subscriptions":"20"}}`, "max_subscriptions is not an integer", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Accept") != "application/nostr+json" {
					http.Error(w, "want the NIP-11 Accept header", http.StatusNotAcceptable)
					return
				}
				w.Header().Set("Access-Control-Allow-Origin", "*")
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			wsURL := "ws" + strings.TrimPrefix(srv.URL, "http")
			info, err := fetchInfo(context.Background(), wsURL)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("fetchInfo: %v", err)
			}
			if len(info.SupportedNIPs) != len(tt.wantNIPs) || info.MaxSubscriptions != tt.wantMax {
				t.Errorf("got nips %v max %d, want %v %d", info.SupportedNIPs, info.MaxSubscriptions, tt.wantNIPs, tt.wantMax)
			}
			note, err := checkNIP11(context.Background(), &env{info: info})
			if err != nil {
				t.Errorf("checkNIP11 on a well-formed document: %v", err)
			}
			if note == "" {
				t.Error("checkNIP11 gave no note")
			}
		})
	}
}

func TestCheckNIP11Requirements(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		cors    bool
		wantErr string
	}{
		{"name must be a string", `{"name":3}`, true, `field "name" is not a string`},
		{"CORS header required", `{"name":"r"}`, false, "Access-Control-Allow-Origin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.cors {
					w.Header().Set("Access-Control-Allow-Origin", "*")
				}
				_, _ = w.Write([]byte(tt.raw))
			}))
			defer srv.Close()
			info, err := fetchInfo(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"))
			if err != nil {
				t.Fatalf("fetchInfo: %v", err)
			}
			_, err = checkNIP11(context.Background(), &env{info: info})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestSortByIDAndFlip(t *testing.T) {
	k := newKey()
	a, b, c := k.event(1, 5, nil, "a"), k.event(1, 5, nil, "b"), k.event(1, 5, nil, "c")
	list := []*nostr.Event{a, b, c}
	sortByID(list)
	for i := 1; i < len(list); i++ {
		if list[i-1].ID > list[i].ID {
			t.Fatalf("not sorted by id: %s before %s", list[i-1].ID, list[i].ID)
		}
	}
	for _, id := range []string{a.ID, strings.Repeat("0", 64)} {
		f := flipLastHex(id)
		if f == id || len(f) != len(id) || f[:63] != id[:63] {
			t.Errorf("flipLastHex(%s) = %s", id, f)
		}
	}
}
