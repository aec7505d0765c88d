package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
	"github.com/prometheus/client_golang/prometheus"
)

// testRelay is a Server listening on a loopback port.
type testRelay struct {
	srv   *Server
	ts    *httptest.Server
	url   string // ws://127.0.0.1:port
	store storage.Store
	reg   *prometheus.Registry
}

// startRelay starts a Server on store with cfg (ServiceURL, Logger and
// Registry filled in) and stops it when the test ends.
func startRelay(t testing.TB, cfg Config, store storage.Store) *testRelay {
	t.Helper()
	return serveRelay(t, cfg, store, true)
}

// startRelayWithoutServiceURL is startRelay for a relay that does not know
// its public URL (no --service-url).
func startRelayWithoutServiceURL(t testing.TB, cfg Config, store storage.Store) *testRelay {
	t.Helper()
	return serveRelay(t, cfg, store, false)
}

func serveRelay(t testing.TB, cfg Config, store storage.Store, setServiceURL bool) *testRelay {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	url := "ws://" + ts.Listener.Addr().String()
	if cfg.ServiceURL == "" && setServiceURL {
		cfg.ServiceURL = url
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	srv, err := New(cfg, store)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts.Config.Handler = srv
	ts.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		ts.Close()
	})
	return &testRelay{srv: srv, ts: ts, url: url, store: store, reg: cfg.Registry}
}

// wsClient is a raw websocket client speaking frames.
type wsClient struct {
	t             *testing.T
	conn          *websocket.Conn
	authChallenge string // the NIP-42 challenge the relay opened with (dial)
}

func dial(t *testing.T, url string, header http.Header) *wsClient {
	t.Helper()
	c, err := tryDial(url, header)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	cl := &wsClient{t: t, conn: c}
	t.Cleanup(func() { _ = c.Close() })
	// Every connection opens with the NIP-42 challenge.
	msg := cl.read()
	if label(msg) != "AUTH" {
		t.Fatalf("first message = %s, want AUTH challenge", msg)
	}
	cl.authChallenge = str(msg[1])
	return cl
}

func tryDial(url string, header http.Header) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(url, header)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, &dialError{status: resp.StatusCode, err: err}
		}
		return nil, err
	}
	return c, nil
}

type dialError struct {
	status int
	err    error
}

func (e *dialError) Error() string { return e.err.Error() }

func (c *wsClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatalf("marshal: %v", err)
	}
	c.sendRaw(b)
}

func (c *wsClient) sendRaw(b []byte) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next message, failing the test after 10 s.
func (c *wsClient) read() []json.RawMessage {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(b, &arr); err != nil || len(arr) == 0 {
		c.t.Fatalf("relay sent a non-array message %s", b)
	}
	return arr
}

func label(msg []json.RawMessage) string { return str(msg[0]) }

func str(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// okResult is a parsed OK message.
type okResult struct {
	id  string
	ok  bool
	msg string
}

func (c *wsClient) readOK() okResult {
	c.t.Helper()
	msg := c.read()
	if label(msg) != "OK" || len(msg) != 4 {
		c.t.Fatalf("got %s, want OK", joinRaw(msg))
	}
	var r okResult
	r.id = str(msg[1])
	_ = json.Unmarshal(msg[2], &r.ok)
	r.msg = str(msg[3])
	return r
}

func (c *wsClient) publish(ev *nostr.Event) okResult {
	c.t.Helper()
	c.send([]any{"EVENT", ev})
	r := c.readOK()
	if r.id != ev.ID {
		c.t.Fatalf("OK for %s, want %s", r.id, ev.ID)
	}
	return r
}

// collect reads a subscription's EVENTs until its EOSE.
func (c *wsClient) collect(subID string) []*nostr.Event {
	c.t.Helper()
	var out []*nostr.Event
	for {
		msg := c.read()
		switch label(msg) {
		case "EVENT":
			if str(msg[1]) != subID {
				c.t.Fatalf("EVENT for %q, want %q", str(msg[1]), subID)
			}
			out = append(out, decodeEvent(c.t, msg[2]))
		case "EOSE":
			if str(msg[1]) != subID {
				c.t.Fatalf("EOSE for %q, want %q", str(msg[1]), subID)
			}
			return out
		default:
			c.t.Fatalf("got %s while waiting for EOSE", joinRaw(msg))
		}
	}
}

func decodeEvent(t *testing.T, raw json.RawMessage) *nostr.Event {
	t.Helper()
	var ev nostr.Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("decode event: %v", err)
	}
	return &ev
}

func joinRaw(msg []json.RawMessage) string {
	parts := make([]string, len(msg))
	for i, m := range msg {
		parts[i] = string(m)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// signer makes signed events for one key.
type signer struct {
	sk, pk string
}

func newSigner(t *testing.T) signer {
	t.Helper()
	sk := nostr.GeneratePrivateKey()
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		t.Fatalf("pubkey: %v", err)
	}
	return signer{sk: sk, pk: pk}
}

func (s signer) event(t *testing.T, kind int, content string, tags nostr.Tags, created nostr.Timestamp) *nostr.Event {
	t.Helper()
	if created == 0 {
		created = nostr.Now()
	}
	ev := &nostr.Event{Kind: kind, Content: content, Tags: tags, CreatedAt: created}
	if ev.Tags == nil {
		ev.Tags = nostr.Tags{}
	}
	if err := ev.Sign(s.sk); err != nil {
		t.Fatalf("sign: %v", err)
	}
	return ev
}

// groupContent is kind 445 content as Marmot clients send it: base64 of
// at least a nonce and a tag's worth of bytes (here derived from label).
func groupContent(label string) string {
	b := make([]byte, 28+len(label))
	copy(b[28:], label)
	return base64.StdEncoding.EncodeToString(b)
}

// testLimits are the defaults (which tests must also pass with) unless a
// test overrides fields.
func testLimits() policy.Limits { return policy.DefaultLimits() }

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
