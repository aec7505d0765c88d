package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip86"
)

// startConfigured starts the relay wiring on args (a loopback --listen and
// a fresh --data-dir come first) and returns it running.
func startConfigured(t *testing.T, args ...string) *runningRelay {
	t.Helper()
	base := []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}
	c, err := parseServeConfig(append(base, args...), env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r, err := startRelay(context.Background(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return r
}

// getStatus GETs url and returns the status and body.
func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// callNIP86 POSTs a NIP-86 call to target, signed NIP-98 style by a for
// the URL u, and returns the status and decoded answer.
func callNIP86(t *testing.T, target, u string, a author, method string, params ...any) (int, nip86.Response) {
	t.Helper()
	body, _ := json.Marshal(nip86.Request{Method: method, Params: append([]any{}, params...)})
	sum := sha256.Sum256(body)
	auth := a.sign(t, 27235, "", nostr.Tags{{"u", u}, {"method", "POST"}, {"payload", hex.EncodeToString(sum[:])}}, 0)
	aj, _ := json.Marshal(auth)
	req, _ := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/nostr+json+rpc")
	req.Header.Set("Authorization", "Nostr "+base64.StdEncoding.EncodeToString(aj))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out nip86.Response
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: decoding the answer (HTTP %d): %v", method, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// TestMetricsListen: with --metrics-listen, /metrics and the NIP-86 API
// are served on that listener only; the public one answers /metrics 404
// and refuses a NIP-86 call with 404 and an error saying where it is not
// served, while websockets, NIP-11 and the probes stay public. Without the
// flag both are on the public listener as before.
func TestMetricsListen(t *testing.T) {
	admin := newAuthor(t)
	const service = "wss://relay.example.com"
	r := startConfigured(t, "--metrics-listen", "127.0.0.1:0", "--admin", admin.pk, "--service-url", service)
	public, private := "http://"+r.Addr, "http://"+r.MetricsAddr
	if r.MetricsAddr == "" || r.MetricsAddr == r.Addr {
		t.Fatalf("metrics address %q (public %q)", r.MetricsAddr, r.Addr)
	}

	if code, _ := getStatus(t, public+"/metrics"); code != http.StatusNotFound {
		t.Errorf("public /metrics: HTTP %d, want 404", code)
	}
	if code, body := getStatus(t, private+"/metrics"); code != http.StatusOK || !strings.Contains(body, "burrow_connections_open") {
		t.Errorf("private /metrics: HTTP %d, %d bytes", code, len(body))
	}
	for _, probe := range []string{"/healthz", "/readyz"} {
		for _, base := range []string{public, private} {
			if code, _ := getStatus(t, base+probe); code != http.StatusOK {
				t.Errorf("%s%s: HTTP %d", base, probe, code)
			}
		}
	}
	if code, _ := getStatus(t, private+"/"); code != http.StatusNotFound {
		t.Errorf("private /: HTTP %d, want 404 (only metrics, probes and NIP-86 there)", code)
	}

	// NIP-98's u names the public URL's https twin, wherever it is sent.
	u := "https://relay.example.com"
	code, resp := callNIP86(t, public, u, admin, "supportedmethods")
	if code != http.StatusNotFound || !strings.Contains(resp.Error, "not served on this address") {
		t.Errorf("NIP-86 on the public listener: HTTP %d %+v, want 404 and a refusal", code, resp)
	}
	code, resp = callNIP86(t, private, u, admin, "supportedmethods")
	if code != http.StatusOK || resp.Error != "" || resp.Result == nil {
		t.Errorf("NIP-86 on the metrics listener: HTTP %d %+v", code, resp)
	}
	// Admins only, there too.
	if _, resp := callNIP86(t, private, u, newAuthor(t), "banpubkey", newAuthor(t).pk, "spam"); !strings.Contains(resp.Error, "unauthorized") {
		t.Errorf("NIP-86 by a non-admin on the metrics listener: %+v", resp)
	}

	// The websocket and NIP-11 stay on the public listener.
	c := mustDial(t, "ws://"+r.Addr)
	ev := newAuthor(t).sign(t, 1, "hello", nil, 0)
	if ok, msg, err := c.publish(ev, testTimeout); err != nil || !ok {
		t.Fatalf("publish on the public listener: %v %q %v", ok, msg, err)
	}
	var doc map[string]any
	fetchNIP11(t, public, &doc)
	if doc["name"] != "Burrow" {
		t.Errorf("NIP-11 on the public listener: %v", doc)
	}

	// Without the flag: both on the one listener.
	plain := startConfigured(t, "--admin", admin.pk, "--service-url", service)
	if code, _ := getStatus(t, "http://"+plain.Addr+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics without --metrics-listen: HTTP %d", code)
	}
	if code, resp := callNIP86(t, "http://"+plain.Addr, u, admin, "supportedmethods"); code != http.StatusOK || resp.Error != "" {
		t.Errorf("NIP-86 without --metrics-listen: HTTP %d %+v", code, resp)
	}
}

// TestMaxConnections: past --max-connections, a websocket upgrade gets
// HTTP 503 with a body saying why, counted with reason "capacity"; a
// connection that closes gives its place back.
func TestMaxConnections(t *testing.T) {
	r := startConfigured(t, "--max-connections", "2", "--metrics-listen", "127.0.0.1:0")
	url := "ws://" + r.Addr
	first, second := mustDial(t, url), mustDial(t, url)
	_ = second

	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil {
		t.Fatal("a third connection was upgraded past --max-connections 2")
	}
	if resp == nil {
		t.Fatalf("third connection: %v, no HTTP answer", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "connection limit") {
		t.Fatalf("third connection: HTTP %d %q, want 503 naming the connection limit", resp.StatusCode, body)
	}
	if _, m := getStatus(t, "http://"+r.MetricsAddr+"/metrics"); !strings.Contains(m, `burrow_connections_refused_total{reason="capacity"} 1`) {
		t.Errorf("refusal not counted:\n%s", grepLines(m, "burrow_connections"))
	}

	first.Close()
	waitUntil(t, "a place given back", func() bool {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// TestMaxConnectionsAuto: "auto" (the default) resolves to the open-file
// limit less the reserve; an explicit figure is kept.
func TestMaxConnectionsAuto(t *testing.T) {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := testConfig(t)
	if c.MaxConnections != autoMaxConnections {
		t.Fatalf("default --max-connections %d, want auto", c.MaxConnections)
	}
	limit, known := openFileLimit()
	got := maxConnections(c, discard)
	switch {
	case !known && got != 0:
		t.Errorf("auto without a known limit: %d, want 0 (no cap)", got)
	case known && limit > fdReserve(limit) && uint64(got) != limit-fdReserve(limit):
		t.Errorf("auto with RLIMIT_NOFILE %d: %d, want %d", limit, got, limit-fdReserve(limit))
	}
	c.MaxConnections = 5
	if got := maxConnections(c, discard); got != 5 {
		t.Errorf("explicit 5: %d", got)
	}
	if _, err := parseServeConfig([]string{"--max-connections", "many"}, env(nil), io.Discard); err == nil ||
		!strings.Contains(err.Error(), `want a whole number or "auto"`) {
		t.Errorf("--max-connections many: %v", err)
	}
}

// TestReadyzDegradedWhileRedisIsDown: with --redis-url, /readyz answers
// 200 "degraded: redis unreachable" while Redis is away (the relay still
// serves its own clients, so a load balancer must keep it), relay
// healthcheck exits 0 saying degraded, burrow_redis_up drops to 0; all
// back to ready when Redis returns.
func TestReadyzDegradedWhileRedisIsDown(t *testing.T) {
	rs := testsvc.RedisServer(t)
	r := startConfigured(t, "--redis-url", rs.URL())
	base := "http://" + r.Addr
	if code, body := getStatus(t, base+"/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("/readyz with Redis up: %d %q", code, body)
	}
	waitUntil(t, "burrow_redis_up 1", func() bool {
		_, m := getStatus(t, base+"/metrics")
		return strings.Contains(m, "\nburrow_redis_up 1")
	})

	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	code, body := getStatus(t, base+"/readyz")
	if code != http.StatusOK || body != "degraded: redis unreachable\n" {
		t.Fatalf("/readyz with Redis down: %d %q, want 200 degraded", code, body)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"healthcheck", "--listen", r.Addr}, env(nil), &out, &errOut); code != 0 ||
		!strings.HasPrefix(out.String(), "ready, degraded (redis unreachable): ") {
		t.Errorf("healthcheck with Redis down: exit %d, %q %q", code, out.String(), errOut.String())
	}
	waitUntil(t, "burrow_redis_up 0", func() bool {
		_, m := getStatus(t, base+"/metrics")
		return strings.Contains(m, "\nburrow_redis_up 0")
	})
	// Its own clients are still served.
	c := mustDial(t, "ws://"+r.Addr)
	if ok, msg, err := c.publish(newAuthor(t).sign(t, 1, "while redis is away", nil, 0), testTimeout); err != nil || !ok {
		t.Fatalf("publish with Redis down: %v %q %v", ok, msg, err)
	}

	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "/readyz ready again", func() bool {
		code, body := getStatus(t, base+"/readyz")
		return code == http.StatusOK && body == "ready\n"
	})
}

// TestMetricsListenIsChecked: --metrics-listen wants host:port, other than
// --listen's.
func TestMetricsListenIsChecked(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--metrics-listen", "nowhere"}, "--metrics-listen \"nowhere\": want host:port"},
		{[]string{"--listen", "127.0.0.1:3334", "--metrics-listen", "127.0.0.1:3334"}, "must differ from --listen"},
	} {
		if _, err := parseServeConfig(tt.args, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
	c, err := parseServeConfig(nil, env(map[string]string{"RELAY_METRICS_LISTEN": "127.0.0.1:9334", "RELAY_MAX_CONNECTIONS": "100"}), io.Discard)
	if err != nil || c.MetricsListen != "127.0.0.1:9334" || c.MaxConnections != 100 {
		t.Errorf("from the environment: %+v %v", c.MetricsListen, err)
	}
}
