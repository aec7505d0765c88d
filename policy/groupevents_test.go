package policy

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

func TestGroupEventShape(t *testing.T) {
	h := strings.Repeat("0f", 32)
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	// A NIP-44 v2 payload: version 2, 32-byte nonce, ciphertext, 32-byte MAC.
	nip44 := base64.StdEncoding.EncodeToString(append([]byte{2}, make([]byte, 32+34+32)...))
	tests := []struct {
		name    string
		tags    nostr.Tags
		content string
		want    string // refusal prefix; "" = accepted
	}{
		{"marmot form", nostr.Tags{{"h", h}}, b64(28), ""},
		{"unpadded base64", nostr.Tags{{"h", h}}, base64.RawStdEncoding.EncodeToString(make([]byte, 29)), ""},
		{"legacy NIP-44 v2", nostr.Tags{{"h", h}, {"encoding", "nip44"}}, nip44, ""},
		{"with expiration", nostr.Tags{{"expiration", "2000000000"}, {"h", h}}, b64(100), ""},
		{"largest content", nostr.Tags{{"h", h}}, strings.Repeat("A", 400), ""},
		{"no h", nostr.Tags{}, b64(28), "invalid: a group event needs exactly one h tag"},
		{"two h", nostr.Tags{{"h", h}, {"h", h}}, b64(28), "invalid: a group event needs exactly one h tag"},
		{"h without value", nostr.Tags{{"h"}}, b64(28), "invalid: group event h tag must be 64 lowercase hex"},
		{"uppercase h", nostr.Tags{{"h", strings.ToUpper(h)}}, b64(28), "invalid: group event h tag must be 64 lowercase hex"},
		{"short h", nostr.Tags{{"h", h[:62]}}, b64(28), "invalid: group event h tag must be 64 lowercase hex"},
		{"p tag", nostr.Tags{{"h", h}, {"p", h}}, b64(28), `invalid: group events may carry only h, expiration and encoding tags, not "p"`},
		{"epoch hint tag", nostr.Tags{{"h", h}, {"epoch", "3"}}, b64(28), "invalid: group events may carry only"},
		{"too short", nostr.Tags{{"h", h}}, b64(27), "invalid: group event content must be base64"},
		{"not base64", nostr.Tags{{"h", h}}, "hello, group!", "invalid: group event content must be base64"},
		{"empty", nostr.Tags{{"h", h}}, "", "invalid: group event content must be base64"},
		{"too long", nostr.Tags{{"h", h}}, strings.Repeat("A", 404), "invalid: group event content too long (404 > 400 bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &nostr.Event{Kind: KindGroupEvent, Tags: tt.tags, Content: tt.content}
			got := GroupEventShape(ev, 400)
			if tt.want == "" && got != "" || tt.want != "" && !strings.HasPrefix(got, tt.want) {
				t.Fatalf("GroupEventShape = %q, want %q", got, tt.want)
			}
		})
	}
	if got := GroupEventShape(&nostr.Event{Kind: 1, Content: "anything"}, 400); got != "" {
		t.Fatalf("kind 1 refused: %q", got)
	}
}

func TestGroupEventsRetention(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	rule := GroupEvents(1<<10, 90*24*time.Hour, func() time.Time { return now })
	content := base64.StdEncoding.EncodeToString(make([]byte, 40))
	h := strings.Repeat("0f", 32)
	tests := []struct {
		name   string
		kind   int
		age    time.Duration
		reject bool
	}{
		{"fresh", KindGroupEvent, time.Hour, false},
		{"89 days", KindGroupEvent, 89 * 24 * time.Hour, false},
		{"91 days", KindGroupEvent, 91 * 24 * time.Hour, true},
		{"old note is not a group event", 1, 400 * 24 * time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &nostr.Event{Kind: tt.kind, CreatedAt: nostr.Timestamp(now.Add(-tt.age).Unix()), Tags: nostr.Tags{{"h", h}}, Content: content}
			reject, msg := rule(context.Background(), ev)
			if reject != tt.reject || reject && !strings.HasPrefix(msg, "invalid: group event is older") {
				t.Fatalf("reject=%v %q, want reject=%v", reject, msg, tt.reject)
			}
		})
	}
	forever := GroupEvents(1<<10, 0, func() time.Time { return now })
	old := &nostr.Event{Kind: KindGroupEvent, CreatedAt: 1, Tags: nostr.Tags{{"h", h}}, Content: content}
	if reject, msg := forever(context.Background(), old); reject {
		t.Fatalf("retention 0 refused an old event: %q", msg)
	}
}

func TestGroupFloodChargesGroupsNotClaims(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	rule := GroupFlood(NewTokenBucket(1, 3, func() time.Time { return now }))
	ctx := WithConn(context.Background(), Conn{})
	ev := func(kind int, h string) *nostr.Event {
		return &nostr.Event{Kind: kind, Tags: nostr.Tags{{"h", h}}}
	}
	a, b := strings.Repeat("aa", 32), strings.Repeat("bb", 32)
	for i := range 3 {
		if reject, msg := rule(ctx, ev(KindGroupEvent, a)); reject {
			t.Fatalf("event %d to a refused: %q", i, msg)
		}
	}
	if reject, msg := rule(ctx, ev(KindGroupEvent, a)); !reject || !strings.HasPrefix(msg, "rate-limited:") {
		t.Fatalf("fourth event to a: reject=%v %q, want rate-limited", reject, msg)
	}
	if reject, _ := rule(ctx, ev(KindGroupEvent, b)); reject {
		t.Fatal("another group was charged for a's events")
	}
	for i := range 10 {
		if reject, _ := rule(ctx, ev(KindSlotClaim, a)); reject {
			t.Fatalf("claim %d was charged to the group", i)
		}
	}
}

func TestContentLimitByKind(t *testing.T) {
	l := DefaultLimits()
	l.MaxContentLength, l.MaxGroupContentLength = 10, 100
	rule := l.EventShape(time.Now)
	tests := []struct {
		kind, size int
		reject     bool
	}{
		{1, 10, false}, {1, 11, true},
		{KindGroupEvent, 100, false}, {KindGroupEvent, 101, true},
		{KindSlotClaim, 100 + ClaimOverhead, false}, {KindSlotClaim, 101 + ClaimOverhead, true},
		// A gift wrap may carry the largest NIP-44 payload (a Welcome of a
		// large group), whatever the general limit.
		{KindGiftWrap, MaxNIP44Payload, false}, {KindGiftWrap, MaxNIP44Payload + 1, true},
	}
	for _, tt := range tests {
		ev := &nostr.Event{Kind: tt.kind, CreatedAt: nostr.Now(), Content: strings.Repeat("a", tt.size)}
		if reject, msg := rule(context.Background(), ev); reject != tt.reject {
			t.Fatalf("kind %d, %d bytes: reject=%v %q, want %v", tt.kind, tt.size, reject, msg, tt.reject)
		}
	}
}
