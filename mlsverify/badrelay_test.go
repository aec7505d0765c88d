package mlsverify

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// fakeRelay serves a NIP-11 document and hands every websocket frame to
// on, which answers through the connection (or does not).
func fakeRelay(t *testing.T, on func(ws *websocket.Conn, frame []json.RawMessage) bool) string {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			w.Header().Set("Content-Type", "application/nostr+json")
			_, _ = w.Write([]byte(`{"name":"fake","supported_nips":[1,11]}`))
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var frame []json.RawMessage
			_ = json.Unmarshal(msg, &frame)
			if !on(ws, frame) {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func frameLabel(f []json.RawMessage) string {
	var s string
	if len(f) > 0 {
		_ = json.Unmarshal(f[0], &s)
	}
	return s
}

// TestBadRelays runs the harness against relays that misbehave and checks
// that each run ends in bounded time with a failure line naming what the
// relay did.
func TestBadRelays(t *testing.T) {
	notRelay := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notRelay.Close)
	cases := []struct {
		name  string
		url   string
		probe bool // the probe already fails
		want  string
	}{
		{"answers garbage", fakeRelay(t, func(ws *websocket.Conn, _ []json.RawMessage) bool {
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"not":"a nostr message"`))
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`["EOSE"]`))
			return true
		}), true, "the relay answers garbage"},
		{"closes connections", fakeRelay(t, func(*websocket.Conn, []json.RawMessage) bool { return false }), true, "the relay closes connections"},
		{"never answers", fakeRelay(t, func(*websocket.Conn, []json.RawMessage) bool { return true }), true, "the relay never answers"},
		{"is not a websocket server", "ws" + strings.TrimPrefix(notRelay.URL, "http"), true, "the relay refuses websocket connections"},
		{"answers REQ but never OK", fakeRelay(t, func(ws *websocket.Conn, f []json.RawMessage) bool {
			if frameLabel(f) == "REQ" && len(f) > 1 {
				b, _ := json.Marshal([]any{"EOSE", f[1]})
				_ = ws.WriteMessage(websocket.TextMessage, b)
			}
			return true
		}), false, "the relay never answers: m0: publish kind 10002: marmot: relay did not answer in time: no OK for event"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			rep, err := Run(context.Background(), Config{Relays: []string{c.url}, Members: 3, Timeout: 300 * time.Millisecond,
				Scenarios: []string{ScenarioKeyPackages, ScenarioInvite}})
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("the run took %v against a relay that %s", took, c.name)
			}
			if rep.Passed {
				t.Fatal("the run passed")
			}
			if (rep.Probe.Status == StatusFail) != c.probe {
				t.Errorf("probe %s (%s), want failed=%v", rep.Probe.Status, rep.Probe.Detail, c.probe)
			}
			for _, s := range rep.Scenarios {
				if s.Status != StatusFail {
					t.Errorf("%s: %s", s.Scenario, s.Status)
				}
				line := s.Checks[len(s.Checks)-1].Detail
				if !strings.Contains(line, c.want) {
					t.Errorf("%s: failure line %q does not say %q", s.Scenario, line, c.want)
				}
			}
			var table strings.Builder
			if err := rep.WriteTable(&table); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(table.String(), c.want) || !strings.Contains(table.String(), "\nFAIL: ") {
				t.Errorf("the table does not name the relay's behaviour:\n%s", table.String())
			}
		})
	}
}
