package storetest

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/storage"
)

// adminView is everything an AdminState lists, with times dropped, to
// compare what two handles answer.
type adminView struct {
	events, pubkeys []storage.AdminRecord
	ips             []storage.BlockedIP
	settings        map[storage.Setting]string
}

func readAdmin(t *testing.T, s storage.Store) adminView {
	t.Helper()
	a, ctx := s.AdminState(), testContext(t)
	var (
		v   adminView
		err error
	)
	if v.events, err = a.EventBans(ctx); err != nil {
		t.Fatalf("EventBans: %v", err)
	}
	if v.pubkeys, err = a.PubKeyBans(ctx); err != nil {
		t.Fatalf("PubKeyBans: %v", err)
	}
	if v.ips, err = a.BlockedIPs(ctx); err != nil {
		t.Fatalf("BlockedIPs: %v", err)
	}
	if v.settings, err = a.Settings(ctx); err != nil {
		t.Fatalf("Settings: %v", err)
	}
	for i := range v.events {
		v.events[i].At = time.Time{}
	}
	for i := range v.pubkeys {
		v.pubkeys[i].At = time.Time{}
	}
	for i := range v.ips {
		v.ips[i].At = time.Time{}
	}
	return v
}

func equalAdmin(t *testing.T, what string, got, want adminView) {
	t.Helper()
	if !slices.Equal(got.events, want.events) {
		t.Errorf("%s: event bans %v, want %v", what, got.events, want.events)
	}
	if !slices.Equal(got.pubkeys, want.pubkeys) {
		t.Errorf("%s: pubkey bans %v, want %v", what, got.pubkeys, want.pubkeys)
	}
	if !slices.Equal(got.ips, want.ips) {
		t.Errorf("%s: blocked addresses %v, want %v", what, got.ips, want.ips)
	}
	if !maps.Equal(got.settings, want.settings) {
		t.Errorf("%s: settings %v, want %v", what, got.settings, want.settings)
	}
}

// within checks a recorded time against the span of the call that wrote
// it, allowing for the backends' precision.
func within(t *testing.T, what string, at, before, after time.Time) {
	t.Helper()
	if at.Before(before.Add(-time.Second)) || at.After(after.Add(time.Second)) {
		t.Errorf("%s recorded at %v, want between %v and %v", what, at, before, after)
	}
}

func adminCases() []testCase {
	return []testCase{
		{"admin records are shared by every handle and survive reopening", func(t *testing.T, open Opener) {
			s := open(t)
			a, ctx := s.AdminState(), testContext(t)
			ev, banned := NewAuthor(t).Event(t, 1, past(), nil, "banned"), NewAuthor(t)
			before := time.Now()
			if _, err := s.Delete(ctx, []string{ev.ID}, storage.ReasonAdmin); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if err := a.RecordEventBan(ctx, ev.ID, "spam"); err != nil {
				t.Fatalf("RecordEventBan: %v", err)
			}
			if _, err := s.Ban(ctx, banned.PubKey); err != nil {
				t.Fatalf("Ban: %v", err)
			}
			if err := a.RecordPubKeyBan(ctx, banned.PubKey, "abuse: \"quoted\", ünïcode\nsecond line"); err != nil {
				t.Fatalf("RecordPubKeyBan: %v", err)
			}
			v4, v6 := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::1")
			for _, ip := range []netip.Addr{v6, v4} {
				if err := a.BlockIP(ctx, ip, "flood from "+ip.String()); err != nil {
					t.Fatalf("BlockIP(%v): %v", ip, err)
				}
			}
			long := strings.Repeat("é", storage.MaxAdminText/2)
			if err := a.SetSetting(ctx, storage.SettingName, "Burrow test"); err != nil {
				t.Fatalf("SetSetting(name): %v", err)
			}
			if err := a.SetSetting(ctx, storage.SettingDescription, long); err != nil {
				t.Fatalf("SetSetting(description): %v", err)
			}
			after := time.Now()

			want := adminView{
				events:   []storage.AdminRecord{{Key: ev.ID, Reason: "spam"}},
				pubkeys:  []storage.AdminRecord{{Key: banned.PubKey, Reason: "abuse: \"quoted\", ünïcode\nsecond line"}},
				ips:      []storage.BlockedIP{{Addr: v4, Reason: "flood from 203.0.113.7"}, {Addr: v6, Reason: "flood from 2001:db8::1"}},
				settings: map[storage.Setting]string{storage.SettingName: "Burrow test", storage.SettingDescription: long},
			}
			other := open(t)
			equalAdmin(t, "the writing handle", readAdmin(t, s), want)
			equalAdmin(t, "another handle", readAdmin(t, other), want)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			reopened := open(t)
			equalAdmin(t, "a handle opened after the first closed", readAdmin(t, reopened), want)

			ra := reopened.AdminState()
			evs, err := ra.EventBans(ctx)
			if err != nil || len(evs) != 1 {
				t.Fatalf("EventBans = %v, %v", evs, err)
			}
			within(t, "the event ban", evs[0].At, before, after)
			pks, err := ra.PubKeyBans(ctx)
			if err != nil || len(pks) != 1 {
				t.Fatalf("PubKeyBans = %v, %v", pks, err)
			}
			within(t, "the pubkey ban", pks[0].At, before, after)
			ips, err := ra.BlockedIPs(ctx)
			if err != nil || len(ips) != 2 {
				t.Fatalf("BlockedIPs = %v, %v", ips, err)
			}
			within(t, "the block", ips[0].At, before, after)
		}},
		{"a second write of a key replaces its record; UnblockIP removes the address", func(t *testing.T, open Opener) {
			s, other := open(t), open(t)
			a, b, ctx := s.AdminState(), other.AdminState(), testContext(t)
			id, pk := NewAuthor(t).Event(t, 1, past(), nil, "x").ID, NewAuthor(t)
			ip, kept := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
			if _, err := s.Ban(ctx, pk.PubKey); err != nil {
				t.Fatalf("Ban: %v", err)
			}
			for _, step := range []func() error{
				func() error { return a.RecordEventBan(ctx, id, "first") },
				func() error { return b.RecordEventBan(ctx, id, "second") },
				func() error { return a.RecordPubKeyBan(ctx, pk.PubKey, "first") },
				func() error { return b.RecordPubKeyBan(ctx, pk.PubKey, "second") },
				func() error { return a.BlockIP(ctx, ip, "first") },
				func() error { return b.BlockIP(ctx, ip, "second") },
				func() error { return a.BlockIP(ctx, kept, "kept") },
				func() error { return a.SetSetting(ctx, storage.SettingName, "first") },
				func() error { return b.SetSetting(ctx, storage.SettingName, "") },
			} {
				if err := step(); err != nil {
					t.Fatal(err)
				}
			}
			equalAdmin(t, "after rewrites", readAdmin(t, s), adminView{
				events:   []storage.AdminRecord{{Key: id, Reason: "second"}},
				pubkeys:  []storage.AdminRecord{{Key: pk.PubKey, Reason: "second"}},
				ips:      []storage.BlockedIP{{Addr: ip, Reason: "second"}, {Addr: kept, Reason: "kept"}},
				settings: map[storage.Setting]string{storage.SettingName: ""},
			})
			for i := range 2 { // unblocking twice is harmless
				if err := b.UnblockIP(ctx, ip); err != nil {
					t.Fatalf("UnblockIP #%d: %v", i+1, err)
				}
			}
			if got := readAdmin(t, s).ips; !slices.Equal(got, []storage.BlockedIP{{Addr: kept, Reason: "kept"}}) {
				t.Fatalf("blocked after UnblockIP: %v, want only %v", got, kept)
			}
		}},
		{"lists are in ascending key order", func(t *testing.T, open Opener) {
			s := open(t)
			a, ctx := s.AdminState(), testContext(t)
			var ids, pks []string
			for i := range 5 {
				au := NewAuthor(t)
				ids = append(ids, au.Event(t, 1, past(), nil, "x").ID)
				pks = append(pks, au.PubKey)
				if _, err := s.Ban(ctx, au.PubKey); err != nil {
					t.Fatalf("Ban: %v", err)
				}
				if err := a.RecordEventBan(ctx, ids[i], ""); err != nil {
					t.Fatalf("RecordEventBan: %v", err)
				}
				if err := a.RecordPubKeyBan(ctx, au.PubKey, "r"); err != nil {
					t.Fatalf("RecordPubKeyBan: %v", err)
				}
			}
			addrs := []string{"10.0.0.2", "::1", "9.255.255.255", "2001:db8::1", "10.0.0.10", "fe80::1"}
			for _, addr := range addrs {
				if err := a.BlockIP(ctx, netip.MustParseAddr(addr), ""); err != nil {
					t.Fatalf("BlockIP(%s): %v", addr, err)
				}
			}
			v := readAdmin(t, s)
			var wantEvents, wantPubkeys []storage.AdminRecord
			for i := range ids {
				wantEvents = append(wantEvents, storage.AdminRecord{Key: ids[i]})
				wantPubkeys = append(wantPubkeys, storage.AdminRecord{Key: pks[i], Reason: "r"})
			}
			byKey := func(x, y storage.AdminRecord) int { return strings.Compare(x.Key, y.Key) }
			slices.SortFunc(wantEvents, byKey)
			slices.SortFunc(wantPubkeys, byKey)
			var wantIPs []storage.BlockedIP
			for _, addr := range []string{"9.255.255.255", "10.0.0.2", "10.0.0.10", "::1", "2001:db8::1", "fe80::1"} {
				wantIPs = append(wantIPs, storage.BlockedIP{Addr: netip.MustParseAddr(addr)})
			}
			equalAdmin(t, "lists", v, adminView{events: wantEvents, pubkeys: wantPubkeys, ips: wantIPs, settings: map[storage.Setting]string{}})
		}},
		{"invalid admin input is refused with ErrInvalid and writes nothing", func(t *testing.T, open Opener) {
			s := open(t)
			a, ctx := s.AdminState(), testContext(t)
			good := NewAuthor(t).PubKey
			long := strings.Repeat("x", storage.MaxAdminText+1)
			for name, call := range map[string]func() error{
				"short event id":             func() error { return a.RecordEventBan(ctx, "abc", "") },
				"uppercase event id":         func() error { return a.RecordEventBan(ctx, strings.ToUpper(good), "") },
				"event ban reason with NUL":  func() error { return a.RecordEventBan(ctx, good, "a\x00b") },
				"event ban reason too long":  func() error { return a.RecordEventBan(ctx, good, long) },
				"non-hex pubkey":             func() error { return a.RecordPubKeyBan(ctx, strings.Repeat("g", 64), "") },
				"pubkey ban reason not UTF8": func() error { return a.RecordPubKeyBan(ctx, good, "\xff\xfe") },
				"zero address":               func() error { return a.BlockIP(ctx, netip.Addr{}, "") },
				"IPv4-mapped address":        func() error { return a.BlockIP(ctx, netip.MustParseAddr("::ffff:192.0.2.1"), "") },
				"address with a zone":        func() error { return a.BlockIP(ctx, netip.MustParseAddr("fe80::1%eth0"), "") },
				"block reason too long":      func() error { return a.BlockIP(ctx, netip.MustParseAddr("192.0.2.1"), long) },
				"unblock zero address":       func() error { return a.UnblockIP(ctx, netip.Addr{}) },
				"unknown setting":            func() error { return a.SetSetting(ctx, "contact", "x") },
				"setting value with NUL":     func() error { return a.SetSetting(ctx, storage.SettingName, "\x00") },
				"setting value too long":     func() error { return a.SetSetting(ctx, storage.SettingDescription, long) },
			} {
				if err := call(); !errors.Is(err, storage.ErrInvalid) {
					t.Errorf("%s: %v, want ErrInvalid", name, err)
				}
			}
			equalAdmin(t, "after refused writes", readAdmin(t, s), adminView{settings: map[storage.Setting]string{}})
		}},
		{"AdminState on a closed store returns ErrClosed", func(t *testing.T, open Opener) {
			s := open(t)
			a := s.AdminState()
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			ctx, id, ip := testContext(t), NewAuthor(t).PubKey, netip.MustParseAddr("192.0.2.1")
			errs := map[string]error{
				"RecordEventBan":  a.RecordEventBan(ctx, id, ""),
				"RecordPubKeyBan": a.RecordPubKeyBan(ctx, id, ""),
				"BlockIP":         a.BlockIP(ctx, ip, ""),
				"UnblockIP":       a.UnblockIP(ctx, ip),
				"SetSetting":      a.SetSetting(ctx, storage.SettingName, ""),
			}
			_, errs["EventBans"] = a.EventBans(ctx)
			_, errs["PubKeyBans"] = a.PubKeyBans(ctx)
			_, errs["BlockedIPs"] = a.BlockedIPs(ctx)
			_, errs["Settings"] = a.Settings(ctx)
			for name, err := range errs {
				if !errors.Is(err, storage.ErrClosed) {
					t.Errorf("%s after Close = %v, want ErrClosed", name, err)
				}
			}
		}},
	}
}
