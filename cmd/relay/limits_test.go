package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// HTTP connections are bounded in time (issue 14 item 3): an idle
// keep-alive connection is closed after --http-idle-timeout, and a request
// that is never finished after --http-read-timeout. Websocket connections
// are not subject to them (their own deadlines apply).
func TestHTTPTimeouts(t *testing.T) {
	c, err := parseServeConfig([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--http-idle-timeout", "300ms", "--http-read-timeout", "500ms"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ws := startInProcess(t, c)
	addr := strings.TrimPrefix(ws, "ws://")

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	start := time.Now()
	if closedWithin(t, idle, 5*time.Second) {
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Fatalf("idle connection closed after %v, before the idle timeout", d)
		}
	} else {
		t.Fatal("idle keep-alive connection still open after 5s")
	}

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "POST / HTTP/1.1\r\nHost: relay\r\nContent-Length: 100\r\n\r\nonly a part"); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(t, slow, 5*time.Second) {
		t.Fatal("a request whose body never ends still open after 5s")
	}

	// A websocket connection outlives both.
	client, err := dial(t.Context(), ws)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	time.Sleep(time.Second)
	if _, err := client.query(nostr.Filter{Kinds: []int{1}}, testTimeout); err != nil {
		t.Fatalf("websocket after the HTTP timeouts: %v", err)
	}
}

// closedWithin reports whether the server closes c within d (reading and
// discarding whatever it sends first).
func closedWithin(t *testing.T, c net.Conn, d time.Duration) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			ne, ok := err.(net.Error)
			return !ok || !ne.Timeout()
		}
	}
}
