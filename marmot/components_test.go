package marmot

import (
	"bytes"
	"encoding/hex"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/codec"
)

// TestRoutingFixtures checks the Nostr routing component (0x8004) against
// MDK's byte fixtures in ../shared/marmot-fixtures: valid states decode to
// the expected fields and encode back to the same bytes (and, wrapped as
// an app_data_dictionary entry, to the fixture's ComponentData bytes);
// the invalid one is refused for the reason it names.
func TestRoutingFixtures(t *testing.T) {
	dir := sharedDir(t, "marmot-fixtures")
	files, err := filepath.Glob(filepath.Join(dir, "nostr-routing-v1-*.v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("found %d routing fixtures, want 3", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var fx struct {
				Component struct{ ID string }
				Bytes     struct {
					Hex              string
					ComponentDataHex string `json:"component_data_hex"`
				}
				Expected struct {
					Valid  bool
					Fields struct {
						NostrGroupIDHex string `json:"nostr_group_id_hex"`
						Relays          []string
					}
					Errors []string
				}
			}
			loadJSON(t, f, &fx)
			if fx.Component.ID != "0x8004" || uint16(ComponentNostrRouting) != 0x8004 {
				t.Fatalf("fixture for component %s", fx.Component.ID)
			}
			raw := unhex(t, fx.Bytes.Hex)
			got, err := ParseNostrRouting(raw)
			if !fx.Expected.Valid {
				if !errors.Is(err, ErrComponent) {
					t.Fatalf("err = %v, want ErrComponent", err)
				}
				if slices.Contains(fx.Expected.Errors, "duplicate_relay") && !strings.Contains(err.Error(), "listed twice") {
					t.Fatalf("err = %v, want a duplicate-relay refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got.GroupID[:]) != fx.Expected.Fields.NostrGroupIDHex || !slices.Equal(got.Relays, fx.Expected.Fields.Relays) {
				t.Fatalf("decoded %x %q, want %s %q", got.GroupID, got.Relays, fx.Expected.Fields.NostrGroupIDHex, fx.Expected.Fields.Relays)
			}
			again, err := got.Marshal()
			if err != nil || !bytes.Equal(again, raw) {
				t.Fatalf("re-encoded %x (%v), want %x", again, err, raw)
			}
			if fx.Bytes.ComponentDataHex != "" {
				dict, err := mls.Marshal(&mls.AppDataDictionary{Components: []mls.ComponentData{{ComponentID: ComponentNostrRouting, Data: raw}}})
				if err != nil {
					t.Fatal(err)
				}
				entry := unhex(t, fx.Bytes.ComponentDataHex)
				want := append(codec.AppendVarint(nil, uint64(len(entry))), entry...)
				if !bytes.Equal(dict, want) {
					t.Fatalf("dictionary %x, want %x", dict, want)
				}
			}
		})
	}
}

func TestNostrRoutingRules(t *testing.T) {
	id := [32]byte{1}
	enc := func(relays ...string) []byte {
		w := codec.NewWriter(0)
		w.Fixed(id[:])
		m := w.OpenVector()
		for _, r := range relays {
			w.Opaque([]byte(r))
		}
		w.CloseVector(m)
		return w.Bytes()
	}
	cases := []struct {
		name   string
		raw    []byte
		reason string // "" = valid
	}{
		{"two sorted", enc("wss://a.example", "wss://b.example"), ""},
		{"ws scheme and a port and path", enc("ws://127.0.0.1:7777/x"), ""},
		{"unsorted", enc("wss://b.example", "wss://a.example"), "not sorted"},
		{"empty list", enc(), "relay list is empty"},
		{"http scheme", enc("https://a.example"), "scheme must be ws or wss"},
		{"uppercase scheme", enc("WSS://a.example"), "scheme must be ws or wss"},
		{"user info", enc("wss://u:p@a.example"), "user information"},
		{"fragment", enc("wss://a.example/#x"), "fragment"},
		{"no host", enc("wss:///path"), "no host"},
		{"too long", enc("wss://" + strings.Repeat("a", 507)), "want 1 to 512"},
		{"short group id", id[:31], "does not decode exactly"},
		{"trailing byte", append(enc("wss://a.example"), 0), "does not decode exactly"},
		{"relay vector overruns", append(id[:], 0x05, 0x02, 'a'), "does not decode exactly"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := ParseNostrRouting(tc.raw)
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				again, err := n.Marshal()
				if err != nil || !bytes.Equal(again, tc.raw) {
					t.Fatalf("round trip %x (%v)", again, err)
				}
				return
			}
			if !errors.Is(err, ErrComponent) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err = %v, want ErrComponent with %q", err, tc.reason)
			}
		})
	}
	// Marshal sorts, and refuses what Parse refuses.
	b, err := NostrRouting{GroupID: id, Relays: []string{"wss://b.example", "wss://a.example"}}.Marshal()
	if err != nil || !bytes.Equal(b, enc("wss://a.example", "wss://b.example")) {
		t.Fatalf("Marshal did not sort: %x %v", b, err)
	}
	if _, err := (NostrRouting{GroupID: id, Relays: []string{"wss://a.example", "wss://a.example"}}).Marshal(); !errors.Is(err, ErrComponent) {
		t.Fatalf("duplicate relay marshalled: %v", err)
	}
}

func TestGroupProfile(t *testing.T) {
	cases := []struct {
		name   string
		raw    string // hex
		want   GroupProfile
		reason string
	}{
		{"empty", "0000", GroupProfile{}, ""},
		{"name and description", "03616263" + "0178", GroupProfile{Name: "abc", Description: "x"}, ""},
		{"utf-8 kept as bytes", "02c3a9" + "00", GroupProfile{Name: "é"}, ""},
		{"name not utf-8", "01ff00", GroupProfile{}, "not UTF-8"},
		{"name 257 bytes", "4101" + strings.Repeat("61", 257) + "00", GroupProfile{}, "at most 256"},
		{"description 4097 bytes", "00" + "5001" + strings.Repeat("61", 4097), GroupProfile{}, "at most 4096"},
		{"missing description", "0161", GroupProfile{}, "does not decode exactly"},
		{"non-minimal length", "40036162630000", GroupProfile{}, "does not decode exactly"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := unhex(t, tc.raw)
			p, err := ParseGroupProfile(raw)
			if tc.reason != "" {
				if !errors.Is(err, ErrComponent) || !strings.Contains(err.Error(), tc.reason) {
					t.Fatalf("err = %v, want %q", err, tc.reason)
				}
				return
			}
			if err != nil || p != tc.want {
				t.Fatalf("got %+v, %v", p, err)
			}
			again, err := p.Marshal()
			if err != nil || !bytes.Equal(again, raw) {
				t.Fatalf("round trip %x %v", again, err)
			}
		})
	}
}

func TestAdminPolicy(t *testing.T) {
	a, b := Pubkey{1}, Pubkey{2}
	enc := func(keys ...Pubkey) []byte {
		var body []byte
		for _, k := range keys {
			body = append(body, k[:]...)
		}
		return append(codec.AppendVarint(nil, uint64(len(body))), body...)
	}
	cases := []struct {
		name   string
		raw    []byte
		reason string
	}{
		{"one", enc(a), ""},
		{"two sorted", enc(a, b), ""},
		{"unsorted", enc(b, a), "not sorted"},
		{"duplicate", enc(a, a), "listed twice"},
		{"empty", enc(), "empty"},
		{"not a multiple of 32", append(codec.AppendVarint(nil, 33), make([]byte, 33)...), "multiple of 32"},
		{"trailing", append(enc(a), 0), "does not decode exactly"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseAdminPolicy(tc.raw)
			if tc.reason != "" {
				if !errors.Is(err, ErrComponent) || !strings.Contains(err.Error(), tc.reason) {
					t.Fatalf("err = %v, want %q", err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			again, err := p.Marshal()
			if err != nil || !bytes.Equal(again, tc.raw) {
				t.Fatalf("round trip %x %v", again, err)
			}
		})
	}
	p, err := AdminPolicy{Admins: []Pubkey{b, a}}.Marshal()
	if err != nil || !bytes.Equal(p, enc(a, b)) {
		t.Fatalf("Marshal did not sort: %x %v", p, err)
	}
	if pol, _ := ParseAdminPolicy(p); !pol.IsAdmin(a) || pol.IsAdmin(Pubkey{3}) {
		t.Fatal("IsAdmin")
	}
}

func TestComponentsList(t *testing.T) {
	cases := []struct {
		raw    string
		want   ComponentsList
		reason string
	}{
		{"00", ComponentsList{}, ""},
		{"06" + "0001" + "8001" + "8009", ComponentsList{0x0001, 0x8001, 0x8009}, ""},
		{"04" + "8009" + "8001", nil, "not sorted"},
		{"04" + "8001" + "8001", nil, "not sorted or repeated"},
		{"03" + "800180", nil, "does not decode exactly"},
		{"02" + "8001" + "00", nil, "does not decode exactly"},
	}
	for _, tc := range cases {
		got, err := ParseComponentsList(unhex(t, tc.raw))
		if tc.reason != "" {
			if !errors.Is(err, ErrComponent) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("%s: err = %v, want %q", tc.raw, err, tc.reason)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Fatalf("%s: %v %v", tc.raw, got, err)
		}
		if enc := got.Marshal(); hex.EncodeToString(enc) != tc.raw {
			t.Fatalf("%s: re-encoded %x", tc.raw, enc)
		}
	}
	if enc := (ComponentsList{0x8009, 0x0001, 0x8009}).Marshal(); hex.EncodeToString(enc) != "0400018009" {
		t.Fatalf("Marshal does not sort and dedupe: %x", enc)
	}
}

func TestIdentityProofEncoding(t *testing.T) {
	p := IdentityProof{Signer: Pubkey{9}, CreatedAt: 1700000000, Signature: [64]byte{7}}
	b := p.Marshal()
	if len(b) != 104 || !bytes.Equal(b[32:40], []byte{0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00}) {
		t.Fatalf("encoding %x", b)
	}
	if got, err := ParseIdentityProof(b); err != nil || got != p {
		t.Fatalf("round trip %+v %v", got, err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"103 bytes", b[:103]},
		{"105 bytes", append(bytes.Clone(b), 0)},
		{"created_at zero", IdentityProof{Signer: Pubkey{9}}.Marshal()},
		{"created_at 2^53", IdentityProof{Signer: Pubkey{9}, CreatedAt: 1 << 53}.Marshal()},
	} {
		if _, err := ParseIdentityProof(tc.b); !errors.Is(err, ErrComponent) {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}

// legacyGroupData builds a 0xF2EE payload field by field, as MDK 0.8
// writes it (MLS varint prefixes; admins as concatenated raw keys).
func legacyGroupData(version uint16, relays []string, withUpload bool, disappearing []byte) []byte {
	w := codec.NewWriter(0)
	w.U16(version)
	w.Fixed(bytes.Repeat([]byte{0xaa}, 32))
	w.Opaque([]byte("Group"))
	w.Opaque([]byte("About"))
	w.Opaque(append(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)...))
	m := w.OpenVector()
	for _, r := range relays {
		w.Opaque([]byte(r))
	}
	w.CloseVector(m)
	w.Opaque(bytes.Repeat([]byte{3}, 32)) // image hash
	w.Opaque(nil)                         // image key
	w.Opaque(nil)                         // image nonce
	if withUpload {
		w.Opaque(nil)
	}
	if disappearing != nil {
		w.Opaque(disappearing)
	}
	return w.Bytes()
}

func TestLegacyGroupData(t *testing.T) {
	relays := []string{"wss://relay.example"}
	v2 := legacyGroupData(2, relays, true, nil)
	g, err := ParseLegacyGroupData(v2)
	if err != nil {
		t.Fatal(err)
	}
	if g.Version != 2 || g.Name != "Group" || g.Description != "About" || len(g.Admins) != 2 || g.Admins[1] != (Pubkey{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}) ||
		!slices.Equal(g.Relays, relays) || len(g.ImageHash) != 32 || len(g.ImageKey) != 0 || g.DisappearingSecs != 0 || g.NostrGroupID[0] != 0xaa {
		t.Fatalf("decoded %+v", g)
	}
	v3 := legacyGroupData(3, relays, true, []byte{0, 0, 0, 0, 0, 0, 0x0e, 0x10})
	if g, err := ParseLegacyGroupData(v3); err != nil || g.DisappearingSecs != 3600 {
		t.Fatalf("v3: %+v %v", g, err)
	}
	// A future version may append fields.
	if _, err := ParseLegacyGroupData(append(legacyGroupData(4, relays, true, nil), 0, 0x01, 0x07)); err != nil {
		t.Fatalf("v4 with an extra field: %v", err)
	}
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"v2 without the upload key", legacyGroupData(2, relays, false, nil)},
		{"v2 with a trailing byte", append(bytes.Clone(v2), 0)},
		{"v3 without disappearing", legacyGroupData(3, relays, true, nil)},
		{"v3 zero disappearing", legacyGroupData(3, relays, true, make([]byte, 8))},
		{"v3 disappearing 4 bytes", legacyGroupData(3, relays, true, make([]byte, 4))},
		{"version 0", legacyGroupData(0, relays, true, nil)},
		{"truncated", v2[:40]},
	} {
		if _, err := ParseLegacyGroupData(tc.raw); !errors.Is(err, ErrComponent) {
			t.Errorf("%s: err = %v, want ErrComponent", tc.name, err)
		}
	}
}

func TestCheckRelayURL(t *testing.T) {
	for _, ok := range []string{"wss://relay.example", "ws://127.0.0.1:3334", "wss://relay.example/path?x=1"} {
		if err := CheckRelayURL(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "relay.example", "http://relay.example", "wss://", "wss://a@b", "wss://a#", "wss://\xff", "wss:// a"} {
		if err := CheckRelayURL(bad); !errors.Is(err, ErrRelayURL) {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}
