package ordering

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/mls/cipher"
)

// slotVectors were computed independently with @noble/curves 2.0.1 (see
// interop/slotvector_test.go, which checks both implementations against
// the same table) and are the vectors of docs/commit-slots.md.
var slotVectors = []struct {
	name, x, sk, slot string
}{
	{
		"below n",
		"0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
		"0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
		"84bf7562262bbd6940085748f3be6afa52ae317155181ece31b66351ccffa4b0",
	},
	{
		"all ones reduced mod n",
		"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		"000000000000000000000000000000014551231950b75fc4402da1732fc9bebe",
		"9166c289b9f905e55f9e3df9f69d7f356b4a22095f894f4715714aa4b56606af",
	},
	{
		"n+1 reduces to 1 (slot is G's x)",
		"fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364142",
		"0000000000000000000000000000000000000000000000000000000000000001",
		"79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
	},
	{
		"n-1 is kept (-G has G's x)",
		"fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140",
		"fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140",
		"79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
	},
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad test hex %q: %v", s, err)
	}
	return b
}

func TestSlotKeyVectors(t *testing.T) {
	for _, v := range slotVectors {
		t.Run(v.name, func(t *testing.T) {
			x := mustHex(t, v.x)
			sk, slot, err := SlotKey(x)
			if err != nil {
				t.Fatalf("SlotKey: %v", err)
			}
			if got := hex.EncodeToString(sk.Serialize()); got != v.sk {
				t.Errorf("sk %s, want %s", got, v.sk)
			}
			if slot != v.slot {
				t.Errorf("slot %s, want %s", slot, v.slot)
			}
			if !bytes.Equal(x, mustHex(t, v.x)) {
				t.Errorf("SlotKey modified its input")
			}
		})
	}
}

func TestSlotKeyRefuses(t *testing.T) {
	tests := []struct {
		name string
		x    []byte
		want error
	}{
		{"zero", make([]byte, 32), ErrZeroKey},
		{"n", mustHex(t, "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"), ErrZeroKey},
		{"nil", nil, ErrSecretLength},
		{"31 bytes", bytes.Repeat([]byte{1}, 31), ErrSecretLength},
		{"33 bytes", bytes.Repeat([]byte{1}, 33), ErrSecretLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sk, slot, err := SlotKey(tc.x)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if sk != nil || slot != "" {
				t.Errorf("got key %v and slot %q with an error", sk != nil, slot)
			}
		})
	}
}

// TestSlotKeySignsClaims checks that a claim signed with sk carries slot
// as its pubkey and verifies with go-nostr, and that a claim whose pubkey
// is another slot does not.
func TestSlotKeySignsClaims(t *testing.T) {
	for _, v := range slotVectors {
		t.Run(v.name, func(t *testing.T) {
			sk, slot, err := SlotKey(mustHex(t, v.x))
			if err != nil {
				t.Fatalf("SlotKey: %v", err)
			}
			ev := nostr.Event{
				Kind:      KindCommitClaim,
				CreatedAt: 1700000000,
				Tags:      nostr.Tags{{"h", "0a0b"}},
				Content:   `{"kind":445}`,
			}
			if err := ev.Sign(hex.EncodeToString(sk.Serialize())); err != nil {
				t.Fatalf("sign: %v", err)
			}
			if ev.PubKey != slot {
				t.Fatalf("claim pubkey %s, want slot %s", ev.PubKey, slot)
			}
			if ok, err := ev.CheckSignature(); !ok || err != nil {
				t.Fatalf("claim signature does not verify: ok=%v err=%v", ok, err)
			}
			for _, other := range slotVectors {
				if other.slot != slot {
					ev.PubKey = other.slot
					break
				}
			}
			if ok, _ := ev.CheckSignature(); ok {
				t.Fatalf("claim verifies under another slot %s", ev.PubKey)
			}
		})
	}
}

// TestSlotExporterVector checks the exporter half of the slot derivation
// against docs/commit-slots.md's vector for suite 0x0001 (exporter_secret to
// x), computed with the engine's labelled KDF as the key schedule's
// MLS-Exporter does. The same vector is derived independently, from the
// document's formulas, with @noble/hashes by cmd/relay/slotsjs (run by
// cmd/relay TestCommitSlotsSecondImplementation).
func TestSlotExporterVector(t *testing.T) {
	suite, err := cipher.New(cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	es := unhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf")
	derived, err := suite.DeriveSecret(es, "nostr-commit-slot")
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(derived); got != "dd28fb40b0cc4b52e817bcfc62b87ccfefb6aa50f7953008ee60bdff1a298145" {
		t.Fatalf("DeriveSecret = %s", got)
	}
	if got := hex.EncodeToString(suite.Hash([]byte("v1"))); got != "3bfc269594ef649228e9a74bab00f042efc91d5acc6fbee31a382e80d42388fe" {
		t.Fatalf(`Hash("v1") = %s`, got)
	}
	x, err := suite.ExpandWithLabel(derived, "exported", suite.Hash([]byte("v1")), SlotSecretLen)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(x); got != "ad9c3971e0644d6ce556d0f86c95abdb7c758f319a93d8f6ac72bfc1260e752b" {
		t.Fatalf("x = %s", got)
	}
	_, slot, err := SlotKey(x)
	if err != nil || slot != "4a2a2d854ae7fa41408c138ef5c5e2e0faefddbfac2b84ceb9d20327b051b246" {
		t.Fatalf("slot = %s, %v", slot, err)
	}
}
