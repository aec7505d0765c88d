package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// What is stored is what was signed (issue 14 item 2c). Each content below
// is written into the EVENT frame's JSON text exactly as given (raw bytes,
// or JSON escapes), and the event is signed over a NIP-01 serialization
// holding the same text, as a client that produced these bytes would. The
// relay must either refuse the event with "invalid:" and store nothing, or
// serve it so that its id and signature verify. Before the fix, the raw
// invalid UTF-8 forms were accepted and served with U+FFFD in their place.
func TestStoredIsWhatWasSigned(t *testing.T) {
	contents := []struct{ name, text string }{
		{"raw 0xff", "\xff"},
		{"raw 0xfe", "\xfe"},
		{"0xff inside text", "a\xffb"},
		{"overlong NUL (2 bytes)", "\xc0\x80"},
		{"overlong U+007F", "\xc1\xbf"},
		{"overlong 3-byte", "\xe0\x80\x80"},
		{"overlong U+07FF", "\xe0\x9f\xbf"},
		{"overlong 4-byte", "\xf0\x80\x80\x80"},
		{"overlong U+FFFF", "\xf0\x8f\xbf\xbf"},
		{"surrogate U+D800", "\xed\xa0\x80"},
		{"surrogate U+DFFF", "\xed\xbf\xbf"},
		{"surrogate pair as CESU-8", "\xed\xa0\xbd\xed\xb8\x80"},
		{"above U+10FFFF", "\xf4\x90\x80\x80"},
		{"5-byte form", "\xf8\x88\x80\x80\x80"},
		{"lone continuation byte", "x\x80y"},
		{"truncated 2-byte", "\xc3"},
		{"truncated 3-byte", "\xe2\x82"},
		{"truncated 4-byte", "\xf0\x9f\x98"},
		{"escaped lone high surrogate", `\ud800`},
		{"escaped lone low surrogate", `\udc00`},
		{"escaped surrogate pair", `\ud83d\ude00`},
		{"escaped NUL", `\u0000`},
		{"raw emoji", "😀"},
		{"raw accented", "é"},
		{"raw U+FFFD", "\ufffd"},
	}
	eachBackend(t, func(t *testing.T, newStore func(testing.TB) storage.Store) {
		store := newStore(t)
		r := startRelay(t, Config{}, store)
		c := dial(t, r.url, nil)
		skBytes := make([]byte, 32)
		skBytes[31] = 7
		sk, _ := btcec.PrivKeyFromBytes(skBytes)
		pk := hex.EncodeToString(schnorr.SerializePubKey(sk.PubKey()))
		refused, served := 0, 0
		for i, tt := range contents {
			created := nostr.Now() - nostr.Timestamp(i)
			serialized := fmt.Sprintf(`[0,"%s",%d,1,[],"%s"]`, pk, created, tt.text)
			h := sha256.Sum256([]byte(serialized))
			sig, err := schnorr.Sign(sk, h[:])
			if err != nil {
				t.Fatal(err)
			}
			id := hex.EncodeToString(h[:])
			frame := fmt.Sprintf(`["EVENT",{"id":"%s","pubkey":"%s","created_at":%d,"kind":1,"tags":[],"content":"%s","sig":"%x"}]`,
				id, pk, created, tt.text, sig.Serialize())
			c.sendRaw([]byte(frame))
			got := c.readOK()
			if got.id != id {
				t.Fatalf("%s: OK for %s, want %s", tt.name, got.id, id)
			}
			if !got.ok {
				if !strings.HasPrefix(got.msg, "invalid:") {
					t.Fatalf("%s: refused with %q, want invalid:", tt.name, got.msg)
				}
				if n, err := store.Count(context.Background(), nostr.Filter{IDs: []string{id}}); err != nil || n != 0 {
					t.Fatalf("%s: refused but stored (%d, %v)", tt.name, n, err)
				}
				refused++
				continue
			}
			c.send([]any{"REQ", "q", nostr.Filter{IDs: []string{id}}})
			evs := c.collect("q")
			if len(evs) != 1 {
				t.Fatalf("%s: accepted, then served %d events", tt.name, len(evs))
			}
			if !evs[0].CheckID() {
				t.Fatalf("%s: served content %q does not hash to the id", tt.name, evs[0].Content)
			}
			if ok, err := evs[0].CheckSignature(); !ok {
				t.Fatalf("%s: served event's signature does not verify: %v", tt.name, err)
			}
			served++
		}
		// Every raw invalid form and every escape Go decodes differently is
		// refused; the valid ones are served.
		if refused != 21 || served != 4 {
			t.Fatalf("refused %d, served %d; want 21 and 4", refused, served)
		}
	})
}
