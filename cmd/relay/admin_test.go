package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/fasthttp/websocket"
)

// The NIP-86 administration state end to end (issue 15 item 4): what admins
// change is kept in the store, applies on every instance sharing it within
// the refresh interval, and survives restarts.

// adminBlocked is the client address the tests block; the relays trust the
// loopback proxy, so a test connects "from" it with X-Forwarded-For.
const adminBlocked = "203.0.113.9"

func fromAddr(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }

// adminRefused reports whether the relay at ws refuses a websocket from
// ip with 403.
func adminRefused(ws, ip string) bool {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(ws, fromAddr(ip))
	if err == nil {
		c.Close()
	}
	return err != nil && resp != nil && resp.StatusCode == http.StatusForbidden
}

// adminLists returns r's listblockedips, listbannedevents and
// listbannedpubkeys answers as JSON.
func adminLists(t *testing.T, r liveRelay, admin author) [3]string {
	t.Helper()
	var out [3]string
	for i, m := range []string{"listblockedips", "listbannedevents", "listbannedpubkeys"} {
		resp := r.manage(t, admin, m)
		if resp.Error != "" {
			t.Fatalf("%s on %s: %s", m, r.http, resp.Error)
		}
		b, _ := json.Marshal(resp.Result)
		out[i] = string(b)
	}
	return out
}

// adminShown checks what an instance shows of the state made by
// changeAdmin: the lists, the NIP-11 name and description, and the block.
func adminShown(t *testing.T, r liveRelay, admin author, want [3]string) {
	t.Helper()
	if got := adminLists(t, r, admin); got != want {
		t.Fatalf("lists on %s = %v, want %v", r.http, got, want)
	}
	var doc struct{ Name, Description string }
	fetchNIP11(t, r.http, &doc)
	if doc.Name != "renamed" || doc.Description != "described" {
		t.Fatalf("NIP-11 of %s: %q / %q, want the changed name and description", r.http, doc.Name, doc.Description)
	}
	if !adminRefused(r.ws, adminBlocked) {
		t.Fatalf("%s accepts a connection from the blocked address", r.ws)
	}
	if adminRefused(r.ws, "198.51.100.4") {
		t.Fatalf("%s refuses an address that is not blocked", r.ws)
	}
}

// changeAdmin makes every kind of NIP-86 change on r and returns what the
// list methods must answer afterwards.
func changeAdmin(t *testing.T, r liveRelay, admin author) [3]string {
	t.Helper()
	victim, banned := newAuthor(t), newAuthor(t)
	ev := victim.sign(t, 1, "to be banned", nil, 0)
	r.mustPublish(t, ev)
	for _, call := range [][]any{
		{"blockip", adminBlocked, "flood"},
		{"banevent", ev.ID, "spam"},
		{"banpubkey", banned.pk, "abuse"},
		{"changerelayname", "renamed"},
		{"changerelaydescription", "described"},
	} {
		if resp := r.manage(t, admin, call[0].(string), call[1:]...); resp.Error != "" {
			t.Fatalf("%s: %s", call[0], resp.Error)
		}
	}
	return [3]string{
		`[{"ip":"` + adminBlocked + `","reason":"flood"}]`,
		`[{"id":"` + ev.ID + `","reason":"spam"}]`,
		`[{"pubkey":"` + banned.pk + `","reason":"abuse"}]`,
	}
}

// stopRelay stops a relay process with SIGTERM and waits for it.
func stopRelay(t *testing.T, p *relayProc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("relay did not exit within 30 s of SIGTERM")
	}
}

// TestAdminStateAcrossInstancesAndRestarts runs two relay processes on one
// PostgreSQL database and one Redis. Every NIP-86 change made on A applies
// on B within the refresh interval (B also ends B's open connection from
// the blocked address), and both list the same records with their reasons.
// Both processes are then restarted and show all of it again from the
// start; an unblock made on B is then seen on A.
func TestAdminStateAcrossInstancesAndRestarts(t *testing.T) {
	bin := buildRelay(t)
	admin := newAuthor(t)
	args := []string{"--database-url", testsvc.Postgres(t).URL, "--redis-url", testsvc.Redis(t),
		"--admin", admin.pk, "--trusted-proxies", "127.0.0.1", "--name", "configured"}
	start := func() (liveRelay, *relayProc) {
		addr := freeAddr(t)
		p := startProcess(t, bin, addr, args...)
		client, err := dial(context.Background(), "ws://"+addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		return liveRelay{ws: "ws://" + addr, http: "http://" + addr, client: client}, p
	}
	a, pa := start()
	b, pb := start()

	open, _, err := websocket.DefaultDialer.Dial(b.ws, fromAddr(adminBlocked))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	want := changeAdmin(t, a, admin)

	// B ends its open connection from the blocked address within its
	// refresh interval (2 s by default).
	open.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		if _, _, err := open.ReadMessage(); err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("B kept its connection from the blocked address open")
			}
			break
		}
	}
	waitUntil(t, "B to show the changed name", func() bool {
		var doc struct{ Name string }
		fetchNIP11(t, b.http, &doc)
		return doc.Name == "renamed"
	})
	adminShown(t, a, admin, want)
	adminShown(t, b, admin, want)

	stopRelay(t, pa)
	stopRelay(t, pb)
	a, _ = start()
	b, _ = start()
	adminShown(t, a, admin, want)
	adminShown(t, b, admin, want)

	if resp := b.manage(t, admin, "unblockip", adminBlocked, "done"); resp.Error != "" {
		t.Fatalf("unblockip: %s", resp.Error)
	}
	if adminRefused(b.ws, adminBlocked) {
		t.Fatal("B still refuses the address it unblocked")
	}
	waitUntil(t, "A to lift the block made on B", func() bool { return !adminRefused(a.ws, adminBlocked) })
	if got := adminLists(t, a, admin); got != [3]string{"[]", want[1], want[2]} {
		t.Fatalf("lists on A after the unblock = %v", got)
	}
}

// TestAdminStateSurvivesARestartOnSQLite: the embedded store keeps the
// NIP-86 state across a restart of the one process on its data directory.
func TestAdminStateSurvivesARestartOnSQLite(t *testing.T) {
	bin := buildRelay(t)
	admin := newAuthor(t)
	args := []string{"--data-dir", t.TempDir(), "--admin", admin.pk, "--trusted-proxies", "127.0.0.1", "--name", "configured"}
	start := func() (liveRelay, *relayProc) {
		addr := freeAddr(t)
		p := startProcess(t, bin, addr, args...)
		client, err := dial(context.Background(), "ws://"+addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		return liveRelay{ws: "ws://" + addr, http: "http://" + addr, client: client}, p
	}
	r, p := start()
	want := changeAdmin(t, r, admin)
	adminShown(t, r, admin, want)
	stopRelay(t, p)
	r, _ = start()
	adminShown(t, r, admin, want)
}
