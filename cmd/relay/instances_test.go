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
// processes on one PostgreSQL database. For every deletion trigger, sent to
// the first instance, the second must stop returning the old KeyPackage as
// soon as the trigger has its OK true, from storage and to a live
// subscription it holds.
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

	old := func(t *testing.T, au author) nostr.Event { return au.slotEvent(t, slotID(0), nostr.Now()-5) }
	triggers := []struct {
		name string
		// fire sends the trigger to instance a and returns the events that
		// must now be absent everywhere.
		fire func(t *testing.T, au author, kp nostr.Event) []string
	}{
		{"a newer version in the same slot", func(t *testing.T, au author, kp nostr.Event) []string {
			a.mustPublish(t, au.slotEvent(t, slotID(0), nostr.Now()))
			return []string{kp.ID}
		}},
		{"the same KeyPackage published again (twin)", func(t *testing.T, au author, kp nostr.Event) []string {
			twin := au.sign(t, 443, kp.Content, nostr.Tags{{"encoding", "base64"}, {"mls_ciphersuite", "0x0001"}, {"i", kp.Tags.GetFirst([]string{"i"}).Value()}}, 0)
			a.mustPublish(t, twin)
			return []string{kp.ID}
		}},
		{"a kind 5 naming it by e", func(t *testing.T, au author, kp nostr.Event) []string {
			a.mustPublish(t, au.sign(t, 5, "", nostr.Tags{{"e", kp.ID}, {"k", "30443"}}, 0))
			return []string{kp.ID}
		}},
		{"a kind 5 naming it by a", func(t *testing.T, au author, kp nostr.Event) []string {
			a.mustPublish(t, au.sign(t, 5, "", nostr.Tags{{"a", "30443:" + au.pk + ":" + slotID(0)}}, 0))
			return []string{kp.ID}
		}},
		{"a new slot over the cap evicting the oldest", func(t *testing.T, au author, kp nostr.Event) []string {
			old := au.slotEvent(t, slotID(1), nostr.Now()-8*24*3600)
			a.mustPublish(t, old) // the author's 2 slots: the fresh kp and this 8-day-old one
			a.mustPublish(t, au.slotEvent(t, slotID(2), nostr.Now()))
			return []string{old.ID}
		}},
		{"a request to vanish", func(t *testing.T, au author, kp nostr.Event) []string {
			a.mustPublish(t, au.sign(t, 62, "", nostr.Tags{{"relay", "ALL_RELAYS"}}, 0))
			return []string{kp.ID}
		}},
		{"banpubkey", func(t *testing.T, au author, kp nostr.Event) []string {
			if res := a.manage(t, admin, "banpubkey", au.pk, "test"); res.Error != "" {
				t.Fatalf("banpubkey: %s", res.Error)
			}
			return []string{kp.ID}
		}},
		{"banevent", func(t *testing.T, au author, kp nostr.Event) []string {
			if res := a.manage(t, admin, "banevent", kp.ID, "test"); res.Error != "" {
				t.Fatalf("banevent: %s", res.Error)
			}
			return []string{kp.ID}
		}},
		{"NIP-40 expiry", func(t *testing.T, au author, kp nostr.Event) []string {
			soon := au.slotEvent(t, slotID(3), nostr.Now())
			soon.Tags = append(soon.Tags, nostr.Tag{"expiration", strconv.FormatInt(time.Now().Unix()+2, 10)})
			if err := soon.Sign(au.sk); err != nil {
				t.Fatal(err)
			}
			a.mustPublish(t, soon)
			waitFor(t, b, soon.ID, true)
			time.Sleep(time.Until(time.Unix(time.Now().Unix()+3, 0)))
			return []string{soon.ID}
		}},
	}
	for _, tr := range triggers {
		t.Run(tr.name, func(t *testing.T) {
			au := newAuthor(t)
			kp := old(t, au)
			a.mustPublish(t, kp)
			waitFor(t, b, kp.ID, true)
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
			gone := tr.fire(t, au, kp)
			// The trigger has its OK true: both instances must already agree.
			for _, id := range gone {
				if slices.Contains(b.ids(t, nostr.Filter{Authors: []string{au.pk}}), id) {
					t.Fatalf("instance b still returns %s after the trigger's OK", id[:12])
				}
				if slices.Contains(a.ids(t, nostr.Filter{IDs: []string{id}}), id) {
					t.Fatalf("instance a still returns %s after the trigger's OK", id[:12])
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
