package policy

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Kinds of the Marmot group transport.
const (
	// KindGroupEvent is a Marmot group event (Commit, Proposal or
	// application message), encrypted, routed by its "h" tag.
	KindGroupEvent = 445
	// KindSlotClaim wraps a kind 445 Commit to claim a commit slot
	// (docs/commit-slots.md). It is ephemeral: never stored.
	KindSlotClaim = 20445
)

// minGroupCiphertext is the smallest decoded kind 445 content: a 12-byte
// ChaCha20-Poly1305 nonce and its 16-byte tag around an empty plaintext.
// Legacy NIP-44 v2 payloads are longer, so the bound admits both forms.
const minGroupCiphertext = 12 + 16

// GroupEventShape checks a kind 445 event against the Marmot transport
// rules (DESIGN.md "Sequencing", Marmot transports/nostr.md): exactly one
// "h" tag of 64 lowercase hex characters; besides it only "expiration" and
// the legacy "encoding"; content base64 of at least 28 bytes (which a NIP-44
// v2 payload also is) and at most maxContent bytes long. It returns the
// refusal, or "" when ev is acceptable. Other kinds pass.
func GroupEventShape(ev *nostr.Event, maxContent int) string {
	if ev.Kind != KindGroupEvent {
		return ""
	}
	hs := 0
	for _, tag := range ev.Tags {
		switch tag[0] {
		case "h":
			hs++
			if len(tag) < 2 || !IsGroupID(tag[1]) {
				return "invalid: group event h tag must be 64 lowercase hex characters"
			}
		case "expiration", "encoding":
		default:
			return fmt.Sprintf("invalid: group events may carry only h, expiration and encoding tags, not %.32q", tag[0])
		}
	}
	if hs != 1 {
		return "invalid: a group event needs exactly one h tag"
	}
	if len(ev.Content) > maxContent {
		return fmt.Sprintf("invalid: group event content too long (%d > %d bytes)", len(ev.Content), maxContent)
	}
	if n, ok := base64Len(ev.Content); !ok || n < minGroupCiphertext {
		return "invalid: group event content must be base64 of at least 28 bytes of ciphertext"
	}
	return ""
}

// GroupEvents returns the admission rule for kind 445: GroupEventShape and,
// when retention is positive, a refusal of events already older than it
// (they would be deleted by the next sweep).
func GroupEvents(maxContent int, retention time.Duration, now func() time.Time) Rule {
	return func(_ context.Context, ev *nostr.Event) (bool, string) {
		if ev.Kind != KindGroupEvent {
			return false, ""
		}
		if msg := GroupEventShape(ev, maxContent); msg != "" {
			return true, msg
		}
		if retention > 0 && time.Unix(int64(ev.CreatedAt), 0).Before(now().Add(-retention)) {
			return true, "invalid: group event is older than this relay keeps group events"
		}
		return false, ""
	}
}

// GroupFlood returns the per-group backstop for kind 445: one token per
// event from perGroup under the event's h. It complements the per-address
// limit (Meter), which pubkey limits cannot replace since group
// events use one-use keys. Commit-slot claims (kind 20445) are not charged
// here: they draw from a per-group bucket of their own (ordering.Slots), so
// an outsider flooding claims for a group's h cannot use up this bucket and
// stop the members' events. A limiter failure lets the event through.
func GroupFlood(perGroup RateLimiter) Rule {
	return func(ctx context.Context, ev *nostr.Event) (bool, string) {
		if ev.Kind != KindGroupEvent {
			return false, ""
		}
		h := ev.Tags.GetFirst([]string{"h", ""})
		if h == nil {
			return false, ""
		}
		ok, err := perGroup.Allow(ctx, "h:"+(*h)[1])
		if err != nil || ok {
			return false, ""
		}
		return true, "rate-limited: too many events for this group, slow down"
	}
}

// IsGroupID reports whether s is a well-formed group id ("h" value): 64
// lowercase hex characters.
func IsGroupID(s string) bool { return IsLowerHex(s, 64) }

// base64Len returns the decoded length of standard base64, padded or not.
func base64Len(s string) (int, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return len(b), true
		}
	}
	return 0, false
}

// IsLowerHex reports whether s is n lowercase hex characters (the shape of
// Nostr ids, pubkeys and signatures).
func IsLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
