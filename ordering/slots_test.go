package ordering

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/server"
	"github.com/nbd-wtf/go-nostr"
)

// signed returns ev signed by a fresh key.
func signed(t *testing.T, ev nostr.Event) *nostr.Event {
	t.Helper()
	if err := ev.Sign(nostr.GeneratePrivateKey()); err != nil {
		t.Fatal(err)
	}
	return &ev
}

func commitFor(t *testing.T, h string, at time.Time) *nostr.Event {
	return signed(t, nostr.Event{Kind: 445, CreatedAt: nostr.Timestamp(at.Unix()), Tags: nostr.Tags{{"h", h}},
		Content: base64.StdEncoding.EncodeToString(make([]byte, 64))})
}

func claimFor(t *testing.T, tags nostr.Tags, content string) *nostr.Event {
	return signed(t, nostr.Event{Kind: KindCommitClaim, CreatedAt: nostr.Now(), Tags: tags, Content: content})
}

func TestSlotsParse(t *testing.T) {
	now := time.Now()
	commit := commitFor(t, gh, now)
	body := string(mustJSON(t, commit))
	other := commitFor(t, strings.Repeat("b", 64), now)
	old := commitFor(t, gh, now.Add(-100*24*time.Hour))
	tampered := *commit
	tampered.Content = base64.StdEncoding.EncodeToString(make([]byte, 65))
	badSig := *commit
	badSig.Sig = strings.Repeat("0", 128)
	holder := strings.Repeat("e", 64)

	tests := []struct {
		name        string
		claim       *nostr.Event
		wantRelease string
		wantErr     string // OK message prefix; "" = accepted
	}{
		{"plain claim", claimFor(t, nostr.Tags{{"h", gh}}, body), "", ""},
		{"release claim", claimFor(t, nostr.Tags{{"h", gh}, {"release", holder}}, body), holder, ""},
		{"release first", claimFor(t, nostr.Tags{{"release", holder}, {"h", gh}}, body), holder, ""},
		{"no h", claimFor(t, nostr.Tags{}, body), "", "invalid: a claim needs one h"},
		{"two h", claimFor(t, nostr.Tags{{"h", gh}, {"h", gh}}, body), "", "invalid: a claim's tags"},
		{"extra tag", claimFor(t, nostr.Tags{{"h", gh}, {"p", holder}}, body), "", "invalid: a claim's tags"},
		{"bad release id", claimFor(t, nostr.Tags{{"h", gh}, {"release", "xyz"}}, body), "", "invalid: a release tag"},
		{"content not JSON", claimFor(t, nostr.Tags{{"h", gh}}, "hello"), "", "invalid: a claim's content"},
		{"inner of another group", claimFor(t, nostr.Tags{{"h", gh}}, string(mustJSON(t, other))), "", "invalid: the claimed Commit belongs"},
		{"inner too old", claimFor(t, nostr.Tags{{"h", gh}}, string(mustJSON(t, old))), "", "invalid: the claimed Commit is older"},
		{"inner id mismatch", claimFor(t, nostr.Tags{{"h", gh}}, string(mustJSON(t, &tampered))), "", "invalid: the claimed Commit's id"},
		{"inner bad signature", claimFor(t, nostr.Tags{{"h", gh}}, string(mustJSON(t, &badSig))), "", "invalid: the claimed Commit has a bad signature"},
		{"inner not 445", claimFor(t, nostr.Tags{{"h", gh}}, string(mustJSON(t, signed(t, nostr.Event{Kind: 1, Tags: nostr.Tags{{"h", gh}}})))), "", "invalid: a claim carries a kind 445"},
	}
	s := Slots{MaxGroupContent: 1 << 10, Retention: 90 * 24 * time.Hour}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := s.Parse(tt.claim)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.H != gh || c.Slot != tt.claim.PubKey || c.Commit.ID != commit.ID || c.Release != tt.wantRelease {
					t.Fatalf("parsed %+v", c)
				}
				return
			}
			r, ok := errors.AsType[server.Refusal](err)
			if !ok || !strings.HasPrefix(r.OKMessage(), tt.wantErr) {
				t.Fatalf("err = %v, want a refusal starting %q", err, tt.wantErr)
			}
		})
	}
}

func mustJSON(t *testing.T, ev *nostr.Event) []byte {
	t.Helper()
	b, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
