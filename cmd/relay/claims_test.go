package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"
)

// dialFrom opens a connection that the relay, trusting the loopback proxy,
// counts under address ip.
func dialFrom(t *testing.T, url, ip string) *wsClient {
	t.Helper()
	c, _, err := websocket.DefaultDialer.DialContext(context.Background(), url, http.Header{"X-Forwarded-For": {ip}})
	if err != nil {
		t.Fatal(err)
	}
	w := &wsClient{c: c}
	t.Cleanup(func() { w.Close() })
	return w
}

// TestClaimFloodDoesNotStopMembers (issue 14 item 7): an outsider who
// knows a group's h floods it with commit-slot claims, each with a fresh
// key (so each would open a new slot) and from many addresses. The
// group's claim bucket stops the flood after its burst, with
// "rate-limited:", so the outsider cannot grow the group's log without
// bound; the group's own bucket for bare kind 445 events is untouched, so
// the members' events are all accepted. Claims also count against their
// address's event limit like any EVENT.
func TestClaimFloodDoesNotStopMembers(t *testing.T) {
	r := startLive(t, "sqlite", "--trusted-proxies", "127.0.0.1",
		"--group-claim-burst", "20", "--group-claim-rate", "0.001",
		"--group-burst", "50", "--group-rate", "0.001",
		"--event-burst", "30", "--event-rate", "0.001")
	h := newGroupID()
	accepted, limited := 0, 0
	for addr := range 10 {
		c := dialFrom(t, r.ws, fmt.Sprintf("203.0.113.%d", addr+1))
		for range 10 {
			ok, msg, err := c.publish(claim(t, newAuthor(t), groupEvent(t, h), ""), testTimeout)
			switch {
			case err != nil:
				t.Fatal(err)
			case ok:
				accepted++
			case msg == "rate-limited: too many commit-slot claims for this group, slow down":
				limited++
			default:
				t.Fatalf("claim answered %q", msg)
			}
		}
	}
	if accepted != 20 || limited != 80 {
		t.Fatalf("%d claims accepted and %d limited, want 20 and 80", accepted, limited)
	}
	member := dialFrom(t, r.ws, "198.51.100.7")
	for i := range 30 {
		if ok, msg, err := member.publish(groupEvent(t, h), testTimeout); err != nil || !ok {
			t.Fatalf("member event %d during the flood: %v %q %v", i, ok, msg, err)
		}
	}

	// One address sending claims to many groups meets its own limit.
	c := dialFrom(t, r.ws, "192.0.2.9")
	for i := range 31 {
		ok, msg, err := c.publish(claim(t, newAuthor(t), groupEvent(t, newGroupID()), ""), testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if i < 30 && !ok {
			t.Fatalf("claim %d refused: %q", i, msg)
		}
		if i == 30 && (ok || !strings.HasPrefix(msg, "rate-limited:") || !strings.Contains(msg, "address")) {
			t.Fatalf("claim 31 from one address: %v %q, want its address limited", ok, msg)
		}
	}
}
