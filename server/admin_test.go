package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/burrow-relay/burrow/storage/sqlite"
)

// sharedDB returns a function opening handles on one fresh database of
// backend, as separate relay processes would.
func sharedDB(t *testing.T, backend string) func() storage.Store {
	t.Helper()
	var open func() (storage.Store, error)
	switch backend {
	case "sqlite":
		path := filepath.Join(t.TempDir(), "relay.db")
		open = func() (storage.Store, error) { return sqlite.Open(context.Background(), sqlite.Config{Path: path}) }
	case "postgres":
		url := testsvc.Postgres(t).URL
		open = func() (storage.Store, error) { return postgres.Open(context.Background(), postgres.Config{URL: url}) }
	}
	return func() storage.Store {
		st, err := open()
		if err != nil {
			t.Fatalf("opening a %s store: %v", backend, err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
}

// adminLists is what listblockedips, listbannedevents and
// listbannedpubkeys answer, as JSON.
func adminLists(t *testing.T, r *testRelay, admin signer) [3]string {
	t.Helper()
	var out [3]string
	for i, m := range []string{"listblockedips", "listbannedevents", "listbannedpubkeys"} {
		resp := manage(t, r, admin, m)
		if resp.Error != "" {
			t.Fatalf("%s: %s", m, resp.Error)
		}
		b, _ := json.Marshal(resp.Result)
		out[i] = string(b)
	}
	return out
}

// refusedDial reports whether a websocket upgrade with header is refused
// with 403.
func refusedDial(r *testRelay, header http.Header) bool {
	c, err := tryDial(r.url, header)
	if err == nil {
		_ = c.Close()
	}
	var de *dialError
	return errors.As(err, &de) && de.status == http.StatusForbidden
}

// TestAdminStateIsSharedAndSurvivesRestart (issue 15 item 4): NIP-86
// changes made on one instance are kept in the store, apply on another
// instance sharing it within the refresh interval (its open connections
// from a blocked address end, new ones are refused), every instance lists
// the same records with their reasons, and an instance started later (a
// restart) applies them from its first request, over its own configured
// name. An unblock made there reaches the first instance.
func TestAdminStateIsSharedAndSurvivesRestart(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			open := sharedDB(t, backend)
			admin, author := newSigner(t), newSigner(t)
			cfg := Config{
				Name:           "configured",
				Admins:         []string{admin.pk},
				TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
				AdminRefresh:   50 * time.Millisecond,
			}
			a, b := startRelay(t, cfg, open()), startRelay(t, cfg, open())
			from := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
			const blocked, other = "203.0.113.9", "198.51.100.4"
			onB := dial(t, b.url, from(blocked))

			victim := author.event(t, 1, "banned", nil, 0)
			for _, call := range [][]any{
				{"blockip", blocked, "flood"},
				{"banevent", victim.ID, "spam"},
				{"banpubkey", author.pk, "abuse"},
				{"changerelayname", "shared"},
				{"changerelaydescription", "kept in the store"},
			} {
				if resp := manage(t, a, admin, call[0].(string), call[1:]...); resp.Error != "" {
					t.Fatalf("%s on A: %s", call[0], resp.Error)
				}
			}

			// B applies the block within its refresh interval: the open
			// connection ends and new ones are refused.
			_ = onB.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				if _, _, err := onB.conn.ReadMessage(); err != nil {
					var ne interface{ Timeout() bool }
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatal("B kept the blocked address's connection open")
					}
					break
				}
			}
			if !refusedDial(b, from(blocked)) {
				t.Fatal("B accepted a connection from the blocked address")
			}
			dial(t, b.url, from(other))
			eventually(t, "B's NIP-11 to show the new name", func() bool {
				doc := fetchNIP11(t, b)
				return doc["name"] == "shared" && doc["description"] == "kept in the store"
			})

			want := [3]string{
				`[{"ip":"203.0.113.9","reason":"flood"}]`,
				`[{"id":"` + victim.ID + `","reason":"spam"}]`,
				`[{"pubkey":"` + author.pk + `","reason":"abuse"}]`,
			}
			if got := adminLists(t, a, admin); got != want {
				t.Fatalf("lists on A = %v, want %v", got, want)
			}
			if got := adminLists(t, b, admin); got != want {
				t.Fatalf("lists on B = %v, want %v", got, want)
			}

			// A restart: a new instance on a new handle, with the refresh
			// interval far away, applies everything before its first request.
			slow := cfg
			slow.AdminRefresh = time.Hour
			c := startRelay(t, slow, open())
			if !refusedDial(c, from(blocked)) {
				t.Fatal("after a restart, a connection from the blocked address was accepted")
			}
			if doc := fetchNIP11(t, c); doc["name"] != "shared" || doc["description"] != "kept in the store" {
				t.Fatalf("after a restart NIP-11 shows %v / %v", doc["name"], doc["description"])
			}
			if got := adminLists(t, c, admin); got != want {
				t.Fatalf("lists after a restart = %v, want %v", got, want)
			}

			// An unblock on the restarted instance reaches A.
			if resp := manage(t, c, admin, "unblockip", blocked, "done"); resp.Error != "" {
				t.Fatalf("unblockip: %s", resp.Error)
			}
			dial(t, c.url, from(blocked))
			eventually(t, "A to lift the block", func() bool { return !refusedDial(a, from(blocked)) })
			if got := adminLists(t, a, admin); got[0] != "[]" || got[1] != want[1] || got[2] != want[2] {
				t.Fatalf("lists on A after unblockip = %v", got)
			}
		})
	}
}

// TestAdminInputIsCheckedBeforeTheStore: malformed NIP-86 arguments are
// refused with a message saying what is wrong, and nothing is recorded.
func TestAdminInputIsCheckedBeforeTheStore(t *testing.T) {
	admin := newSigner(t)
	r := startRelay(t, Config{Admins: []string{admin.pk}}, newTestStore(t))
	long := string(make([]byte, storage.MaxAdminText+1))
	for _, call := range [][]any{
		{"banevent", "abc", "x"},
		{"banpubkey", "ABC", "x"},
		{"blockip", "192.0.2.1", long},
		{"changerelayname", "a\x00b"},
		{"changerelaydescription", long},
	} {
		if resp := manage(t, r, admin, call[0].(string), call[1:]...); resp.Error == "" {
			t.Errorf("%s with bad input accepted", call[0])
		}
	}
	if got := adminLists(t, r, admin); !reflect.DeepEqual(got, [3]string{"[]", "[]", "[]"}) {
		t.Fatalf("lists after refused calls = %v", got)
	}
	if doc := fetchNIP11(t, r); doc["name"] != "" && doc["name"] != nil {
		t.Fatalf("name after a refused change = %v", doc["name"])
	}
}
