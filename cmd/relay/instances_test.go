package main

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/nbd-wtf/go-nostr"
)

// TestKeyPackageDeletionIsConsistentAcrossInstances runs two relay
// processes on one PostgreSQL database. Each KeyPackage is published as
// twins, a 30443 on one instance and a legacy 443 carrying the same
// KeyPackage on the other (the 443 first and the 30443 first; base64 and
// hex content). For every deletion trigger, sent to the first instance,
// neither instance may return either twin once the trigger has its OK
// true, from storage or to a live subscription opened before it.
func TestKeyPackageDeletionIsConsistentAcrossInstances(t *testing.T) {
	bin := buildRelay(t)
	db := testsvc.Postgres(t).URL
	admin := newAuthor(t)
	args := []string{"--database-url", db, "--admin", admin.pk, "--keypackage-slot-cap", "2"}
	start := func() liveRelay {
		addr := freeAddr(t)
		startProcess(t, bin, addr, args...)
		client, err := dial(context.Background(), "ws://"+addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		return liveRelay{ws: "ws://" + addr, http: "http://" + addr, client: client}
	}
	a, b := start(), start()

	// pair is one KeyPackage as twins: kp (30443, slot 0) and legacy (443).
	type pair struct{ kp, legacy nostr.Event }
	// Eight days old, so that the slot cap may evict it.
	old := func(t *testing.T, au author, hexLegacy bool) pair {
		kp := au.slotEvent(t, slotID(0), nostr.Now()-8*24*3600)
		return pair{kp, au.legacyTwin(t, kp, hexLegacy, kp.CreatedAt)}
	}
	both := func(p pair) []string { return []string{p.kp.ID, p.legacy.ID} }
	triggers := []struct {
		name string
		// fire sends the trigger to instance a and returns the events that
		// must now be absent everywhere.
		fire func(t *testing.T, au author, p pair, live *wsClient) []string
	}{
		{"a newer version in the same slot with another KeyPackage", func(t *testing.T, au author, p pair, live *wsClient) []string {
			a.mustPublish(t, au.slotEvent(t, slotID(0), nostr.Now()))
			return both(p)
		}},
		{"a kind 5 naming the 30443 by e", func(t *testing.T, au author, p pair, live *wsClient) []string {
			a.mustPublish(t, au.sign(t, 5, "", nostr.Tags{{"e", p.kp.ID}, {"k", "30443"}}, 0))
			return both(p)
		}},
		{"a kind 5 naming the 443 by e", func(t *testing.T, au author, p pair, live *wsClient) []string {
			a.mustPublish(t, au.sign(t, 5, "", nostr.Tags{{"e", p.legacy.ID}, {"k", "443"}}, 0))
			return both(p)
		}},
		{"a kind 5 naming the 30443 by a", func(t *testing.T, au author, p pair, live *wsClient) []string {
			a.mustPublish(t, au.sign(t, 5, "", nostr.Tags{{"a", "30443:" + au.pk + ":" + slotID(0)}}, 0))
			return both(p)
		}},
		{"new KeyPackages over the cap evicting the oldest", func(t *testing.T, au author, p pair, live *wsClient) []string {
			// The twins count once: a second KeyPackage fills the cap of 2,
			// a third evicts the twins, older than the 7-day evict age.
			a.mustPublish(t, au.slotEvent(t, slotID(1), nostr.Now()))
			a.mustPublish(t, au.slotEvent(t, slotID(2), nostr.Now()))
			return both(p)
		}},
		{"a request to vanish", func(t *testing.T, au author, p pair, live *wsClient) []string {
			a.mustPublish(t, au.sign(t, 62, "", nostr.Tags{{"relay", "ALL_RELAYS"}}, 0))
			return both(p)
		}},
		{"banpubkey", func(t *testing.T, au author, p pair, live *wsClient) []string {
			if res := a.manage(t, admin, "banpubkey", au.pk, "test"); res.Error != "" {
				t.Fatalf("banpubkey: %s", res.Error)
			}
			return both(p)
		}},
		{"banevent of the 30443", func(t *testing.T, au author, p pair, live *wsClient) []string {
			if res := a.manage(t, admin, "banevent", p.kp.ID, "test"); res.Error != "" {
				t.Fatalf("banevent: %s", res.Error)
			}
			return both(p)
		}},
		{"banevent of the 443", func(t *testing.T, au author, p pair, live *wsClient) []string {
			if res := a.manage(t, admin, "banevent", p.legacy.ID, "test"); res.Error != "" {
				t.Fatalf("banevent: %s", res.Error)
			}
			return both(p)
		}},
		{"NIP-40 expiry of one twin", func(t *testing.T, au author, p pair, live *wsClient) []string {
			soon := au.slotEvent(t, slotID(3), nostr.Now())
			soon.Tags = append(soon.Tags, nostr.Tag{"expiration", strconv.FormatInt(time.Now().Unix()+2, 10)})
			if err := soon.Sign(au.sk); err != nil {
				t.Fatal(err)
			}
			soonTwin := au.legacyTwin(t, soon, false, 0) // no expiration of its own
			a.mustPublish(t, soon)
			b.mustPublish(t, soonTwin)
			waitFor(t, b, soon.ID, true)
			// Delivered live before the expiration: allowed.
			live.liveEvents("live", 300*time.Millisecond)
			time.Sleep(time.Until(time.Unix(time.Now().Unix()+3, 0)))
			// The sweeper runs every minute; until it does, the expired
			// twin is not served, and neither may its twin be.
			return []string{soon.ID, soonTwin.ID}
		}},
	}
	for _, tr := range triggers {
		for _, legacyFirst := range []bool{true, false} {
			name := tr.name + "/30443 first"
			if legacyFirst {
				name = tr.name + "/443 first, hex"
			}
			t.Run(name, func(t *testing.T) {
				au := newAuthor(t)
				p := old(t, au, legacyFirst)
				// The twins coexist, each published on its own instance.
				first, second := p.kp, p.legacy
				if legacyFirst {
					first, second = p.legacy, p.kp
				}
				a.mustPublish(t, first)
				b.mustPublish(t, second)
				for _, r := range []liveRelay{a, b} {
					waitFor(t, r, first.ID, true)
					waitFor(t, r, second.ID, true)
				}
				// A live subscription on instance b, opened before the trigger.
				live, err := dial(context.Background(), b.ws)
				if err != nil {
					t.Fatal(err)
				}
				defer live.Close()
				// Wait for EOSE, so everything after it is live.
				if _, err := live.subscribe("live", nostr.Filter{Authors: []string{au.pk}, Kinds: []int{443, 30443}}, testTimeout); err != nil {
					t.Fatal(err)
				}
				gone := tr.fire(t, au, p, live)
				// The trigger has its OK true: both instances must already agree.
				for _, id := range gone {
					for name, r := range map[string]liveRelay{"a": a, "b": b} {
						if slices.Contains(r.ids(t, nostr.Filter{Authors: []string{au.pk}}), id) {
							t.Fatalf("instance %s still returns %s by author after the trigger's OK", name, id[:12])
						}
						if slices.Contains(r.ids(t, nostr.Filter{IDs: []string{id}}), id) {
							t.Fatalf("instance %s still returns %s by id after the trigger's OK", name, id[:12])
						}
					}
				}
				for _, ev := range live.liveEvents("live", 300*time.Millisecond) {
					if slices.Contains(gone, ev.ID) {
						t.Fatalf("instance b's live subscription delivered deleted %s", ev.ID[:12])
					}
				}
			})
		}
	}
}

// waitFor polls r until id is (or is not) stored, for events another
// instance just wrote.
func waitFor(t *testing.T, r liveRelay, id string, present bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for slices.Contains(r.ids(t, nostr.Filter{IDs: []string{id}}), id) != present {
		if time.Now().After(deadline) {
			t.Fatalf("event %s present=%v not seen within %s", id[:12], present, testTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
