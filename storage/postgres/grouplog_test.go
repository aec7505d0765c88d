package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/burrow-relay/burrow/storage/storetest"
)

func TestDisableSequencing(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, postgres.Config{URL: testsvc.Postgres(t).URL, DisableSequencing: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	a := storetest.NewAuthor(t)
	ev := storetest.GroupEvent(t, a, "g", nostr.Now()-10)
	if res, err := s.Save(ctx, ev); err != nil || res.Seq != 0 {
		t.Fatalf("Save = %+v, %v; want Seq 0", res, err)
	}
	if res, err := s.Save(ctx, ev); err == nil || res.Seq != 0 {
		t.Fatalf("duplicate Save = %+v, %v; want ErrDuplicate with Seq 0", res, err)
	}
	if n, err := s.Count(ctx, nostr.Filter{Tags: nostr.TagMap{"h": {"g"}}}); err != nil || n != 1 {
		t.Fatalf("Count(#h g) = %d, %v; want 1", n, err)
	}
	_, claimErr := s.ClaimSlot(ctx, storage.SlotClaim{H: "g", Slot: storetest.NewSlot(), Commit: storetest.GroupEvent(t, a, "g", nostr.Now())})
	_, lastErr := s.LastSeq(ctx, "g")
	var logErr error
	for _, err := range s.GroupLog(ctx, "g", 0, 0) {
		logErr = err
	}
	for name, err := range map[string]error{"ClaimSlot": claimErr, "LastSeq": lastErr, "GroupLog": logErr} {
		if err == nil || !strings.Contains(err.Error(), "sequencing is disabled") {
			t.Errorf("%s = %v on a store without sequencing, want it to say sequencing is disabled", name, err)
		}
	}
}
