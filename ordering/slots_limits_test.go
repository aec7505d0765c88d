package ordering

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/server"
	"github.com/burrow-relay/burrow/storage/sqlite"
)

// TestClaimedCommitObeysTheCreatedAtWindow: the Commit inside a claim gets
// the answer a bare kind 445 with the same created_at gets from the
// relay's event limits.
func TestClaimedCommitObeysTheCreatedAtWindow(t *testing.T) {
	now := time.Now()
	lim := policy.DefaultLimits()
	lim.CreatedAtPast = 48 * time.Hour
	s := Slots{MaxGroupContent: lim.MaxGroupContentLength, Limits: &lim, Now: func() time.Time { return now }}
	bare := lim.EventShape(func() time.Time { return now })
	for _, tt := range []struct {
		name    string
		at      time.Time
		refused string // prefix, "" when accepted
	}{
		{"now", now, ""},
		{"just inside the future bound", now.Add(lim.CreatedAtFuture - time.Minute), ""},
		{"past the future bound", now.Add(lim.CreatedAtFuture + time.Minute), "invalid: created_at is too far in the future"},
		{"a year ahead", now.Add(365 * 24 * time.Hour), "invalid: created_at is too far in the future"},
		{"just inside the past bound", now.Add(-lim.CreatedAtPast + time.Minute), ""},
		{"past the past bound", now.Add(-lim.CreatedAtPast - time.Minute), "invalid: created_at is too far in the past"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			commit := commitFor(t, gh, tt.at)
			refusedBare, bareMsg := bare(context.Background(), commit)
			_, err := s.Parse(claimFor(t, nostr.Tags{{"h", gh}}, string(mustJSON(t, commit))))
			if tt.refused == "" {
				if refusedBare || err != nil {
					t.Fatalf("bare refused %v (%q), claim %v; want both accepted", refusedBare, bareMsg, err)
				}
				return
			}
			r, ok := errors.AsType[server.Refusal](err)
			if !refusedBare || !strings.HasPrefix(bareMsg, tt.refused) || !ok || r.OKMessage() != bareMsg+" (claimed Commit)" {
				t.Fatalf("bare: %v %q; claim: %v; want both refused with %q", refusedBare, bareMsg, err, tt.refused)
			}
		})
	}
}

// TestClaimsDrawFromTheirGroupsBucket: every claim takes a token of its
// group's claim bucket before the store decides it; past the burst a
// claim is refused with rate-limited: and nothing of it is stored, while
// another group's claims go on.
func TestClaimsDrawFromTheirGroupsBucket(t *testing.T) {
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "relay.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	s := Slots{MaxGroupContent: 1 << 10, Claims: policy.NewTokenBucket(0.001, 3, func() time.Time { return now })}
	ctx := context.Background()
	for i := range 3 {
		env, err := s.SaveEnvelope(ctx, st, claimFor(t, nostr.Tags{{"h", gh}}, string(mustJSON(t, commitFor(t, gh, now)))))
		if err != nil || env.Carried == nil {
			t.Fatalf("claim %d: %+v, %v", i, env, err)
		}
	}
	commit := commitFor(t, gh, now)
	_, err = s.SaveEnvelope(ctx, st, claimFor(t, nostr.Tags{{"h", gh}}, string(mustJSON(t, commit))))
	if r, ok := errors.AsType[server.Refusal](err); !ok || !strings.HasPrefix(r.OKMessage(), "rate-limited:") {
		t.Fatalf("fourth claim: %v, want rate-limited", err)
	}
	if n, err := st.Count(ctx, nostr.Filter{IDs: []string{commit.ID}}); err != nil || n != 0 {
		t.Fatalf("the refused claim's Commit is stored (%d, %v)", n, err)
	}
	other := strings.Repeat("b", 64)
	if env, err := s.SaveEnvelope(ctx, st, claimFor(t, nostr.Tags{{"h", other}}, string(mustJSON(t, commitFor(t, other, now))))); err != nil || env.Carried == nil {
		t.Fatalf("another group's claim: %+v, %v", env, err)
	}
}
