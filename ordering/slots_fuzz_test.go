package ordering

import (
	"strings"
	"testing"

	"github.com/burrow-relay/burrow/server"
	"github.com/nbd-wtf/go-nostr"
)

// FuzzSlotsParse feeds claims with arbitrary tags and content to the claim
// checks: they never panic, refuse with "invalid:", and accept only a claim
// whose Commit is a kind 445 of the claim's group.
func FuzzSlotsParse(f *testing.F) {
	commit := `{"kind":445,"id":"` + strings.Repeat("0", 64) + `","pubkey":"` + strings.Repeat("1", 64) +
		`","created_at":1,"tags":[["h","` + gh + `"]],"content":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","sig":"` + strings.Repeat("2", 128) + `"}`
	f.Add("h", gh, "", "", commit)
	f.Add("h", gh, "release", strings.Repeat("e", 64), commit)
	f.Add("h", "nothex", "x", "y", "{}")
	f.Add("", "", "", "", "")
	s := Slots{MaxGroupContent: 1 << 10}
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2, content string) {
		tags := nostr.Tags{{n1, v1}}
		if n2 != "" {
			tags = append(tags, nostr.Tag{n2, v2})
		}
		ev := &nostr.Event{Kind: KindCommitClaim, PubKey: strings.Repeat("3", 64), Tags: tags, Content: content}
		c, err := s.Parse(ev)
		if err != nil {
			r, ok := err.(server.Refusal)
			if !ok || !strings.HasPrefix(r.OKMessage(), "invalid:") {
				t.Fatalf("error %v is not an invalid: refusal", err)
			}
			return
		}
		if c.Commit == nil || c.Commit.Kind != 445 || c.Commit.Tags.GetFirst([]string{"h", ""}).Value() != c.H {
			t.Fatalf("accepted %+v", c)
		}
	})
}
