package storetest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// NewSlot returns a random commit slot (64 lowercase hex characters), as
// a slot key's x-only public key would be.
func NewSlot() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func mustClaim(t *testing.T, s storage.Store, c storage.SlotClaim) storage.SlotResult {
	t.Helper()
	res, err := s.ClaimSlot(testContext(t), c)
	if err != nil {
		t.Fatalf("ClaimSlot(%s, release %q): %v", c.Commit.ID, c.Release, err)
	}
	return res
}

// wantTaken asserts that err is a *storage.SlotTakenError naming holder.
func wantTaken(t *testing.T, what string, err error, holder string) {
	t.Helper()
	var taken *storage.SlotTakenError
	if !errors.As(err, &taken) || !errors.Is(err, storage.ErrSlotTaken) {
		t.Fatalf("%s: err = %v, want a *SlotTakenError", what, err)
	}
	if taken.Holder != holder {
		t.Fatalf("%s: slot taken by %s, want %s", what, taken.Holder, holder)
	}
}

func claimTaken(t *testing.T, s storage.Store, c storage.SlotClaim, holder string) {
	t.Helper()
	res, err := s.ClaimSlot(testContext(t), c)
	wantTaken(t, "ClaimSlot("+c.Commit.ID+")", err, holder)
	if res.Seq != 0 || res.Stored || res.Released != "" || len(res.Deleted) != 0 {
		t.Fatalf("a lost claim answered %+v", res)
	}
}

// claimLost asserts that c is refused with a *storage.CommitLostError
// naming slot and holder, and changes nothing.
func claimLost(t *testing.T, s storage.Store, c storage.SlotClaim, slot, holder string) {
	t.Helper()
	res, err := s.ClaimSlot(testContext(t), c)
	var lost *storage.CommitLostError
	if !errors.As(err, &lost) || !errors.Is(err, storage.ErrCommitLost) || errors.Is(err, storage.ErrSlotTaken) {
		t.Fatalf("ClaimSlot(%s) = %v, want a *CommitLostError", c.Commit.ID, err)
	}
	if lost.Slot != slot || lost.Holder != holder {
		t.Fatalf("ClaimSlot(%s): lost slot %s to %s, want slot %s to %s", c.Commit.ID, lost.Slot, lost.Holder, slot, holder)
	}
	if res.Seq != 0 || res.Stored || res.Released != "" {
		t.Fatalf("a refused claim answered %+v", res)
	}
}

// claimHolds asserts that c is refused with a *storage.CommitHoldsError
// naming slot.
func claimHolds(t *testing.T, s storage.Store, c storage.SlotClaim, slot string) {
	t.Helper()
	res, err := s.ClaimSlot(testContext(t), c)
	var holds *storage.CommitHoldsError
	if !errors.As(err, &holds) || !errors.Is(err, storage.ErrCommitHolds) || holds.Slot != slot {
		t.Fatalf("ClaimSlot(%s) = %v, want a *CommitHoldsError naming %s", c.Commit.ID, err, slot)
	}
	if res.Seq != 0 || res.Stored || res.Released != "" {
		t.Fatalf("a refused claim answered %+v", res)
	}
}

func saveTaken(t *testing.T, s storage.Store, ev *nostr.Event, holder string) {
	t.Helper()
	_, err := s.Save(testContext(t), ev)
	wantTaken(t, "bare Save of "+ev.ID, err, holder)
}

func wantSlotResult(t *testing.T, what string, got storage.SlotResult, seq int64, stored bool, released string) {
	t.Helper()
	if got.Seq != seq || got.Stored != stored || got.Released != released {
		t.Fatalf("%s = {Seq %d, Stored %v, Released %q}, want {Seq %d, Stored %v, Released %q}",
			what, got.Seq, got.Stored, got.Released, seq, stored, released)
	}
}

// released maps each seq of group h's log to its Released flag.
func released(t *testing.T, s storage.Store, h string) map[int64]bool {
	t.Helper()
	out := map[int64]bool{}
	for _, sq := range groupLog(t, s, h, 0, 0) {
		out[sq.Seq] = sq.Released
	}
	return out
}

func commitSlotCases() []testCase {
	return []testCase{
		{"a claim on a free slot stores the Commit with the group's next seq", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			slot := NewSlot()
			mustSave(t, s, group(t, a, "g", past()))
			c := group(t, a, "g", past())
			res := mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: c})
			wantSlotResult(t, "claim", res, 2, true, "")
			if !stored(t, s, c.ID) {
				t.Fatal("the Commit is not served")
			}
			if got := released(t, s, "g"); len(got) != 2 || got[2] {
				t.Fatalf("log flags = %v, want seqs 1 and 2, none released", got)
			}
			if n := lastSeq(t, s, "g"); n != 2 {
				t.Fatalf("LastSeq = %d, want 2", n)
			}
		}},
		{"a retry of the holder answers the same seq and stores nothing", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			slot := NewSlot()
			c := group(t, a, "g", past())
			claim := storage.SlotClaim{H: "g", Slot: slot, Commit: c}
			wantSlotResult(t, "claim", mustClaim(t, s, claim), 1, true, "")
			for i := range 2 {
				wantSlotResult(t, "retry", mustClaim(t, s, claim), 1, false, "")
				if i == 0 {
					s = open(t) // another instance sees the same slot
				}
			}
			if n := lastSeq(t, s, "g"); n != 1 {
				t.Fatalf("LastSeq after retries = %d, want 1", n)
			}
			if n := count(t, s, nostr.Filter{}); n != 1 {
				t.Fatalf("%d events stored, want 1", n)
			}
			// A bare re-send of the holder is an ordinary duplicate.
			if res := saveFails(t, s, c, storage.ErrDuplicate); res.Seq != 1 {
				t.Fatalf("duplicate Seq = %d, want 1", res.Seq)
			}
		}},
		{"a losing claim names the holder, stores nothing, and its bare Save names the holder too", func(t *testing.T, open Opener) {
			s, other := open(t), open(t)
			a, b := NewAuthor(t), NewAuthor(t)
			slot := NewSlot()
			winner, loser := group(t, a, "g", past()), group(t, b, "g", past())
			mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: winner})
			claimTaken(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: loser}, winner.ID)
			claimTaken(t, other, storage.SlotClaim{H: "g", Slot: slot, Commit: loser}, winner.ID)
			if stored(t, s, loser.ID) {
				t.Fatal("the losing Commit is served")
			}
			if n := lastSeq(t, s, "g"); n != 1 {
				t.Fatalf("LastSeq = %d, want 1: the loser took a number", n)
			}
			saveTaken(t, s, loser, winner.ID)
			saveTaken(t, other, loser, winner.ID)
			if stored(t, other, loser.ID) {
				t.Fatal("the losing Commit is served after its bare Save")
			}
			// Other slots, of this group or another, are independent.
			res := mustClaim(t, s, storage.SlotClaim{H: "g", Slot: NewSlot(), Commit: group(t, a, "g", past())})
			wantSlotResult(t, "another slot of g", res, 2, true, "")
			res = mustClaim(t, s, storage.SlotClaim{H: "g2", Slot: slot, Commit: group(t, a, "g2", past())})
			wantSlotResult(t, "the same slot in g2", res, 1, true, "")
			// A loser that was already stored as a bare event stays stored.
			bare := group(t, b, "g", past())
			mustSave(t, s, bare)
			claimTaken(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: bare}, winner.ID)
			if !stored(t, s, bare.ID) {
				t.Fatal("a bare event that lost a claim afterwards is no longer served")
			}
			saveFails(t, s, bare, storage.ErrDuplicate)
		}},
		{"a Commit already stored as a bare event takes a free slot with its seq", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			slot := NewSlot()
			c := group(t, a, "g", past())
			mustSave(t, s, c)
			mustSave(t, s, group(t, a, "g", past()))
			wantSlotResult(t, "claim", mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: c}), 1, false, "")
			claimTaken(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: group(t, a, "g", past())}, c.ID)
			if n := lastSeq(t, s, "g"); n != 2 {
				t.Fatalf("LastSeq = %d, want 2", n)
			}
		}},
		{"a claim whose Commit Save refuses records nothing", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			slot := NewSlot()
			expired := group(t, a, "g", past(), expiration(time.Now().Unix()-10))
			if _, err := s.ClaimSlot(testContext(t), storage.SlotClaim{H: "g", Slot: slot, Commit: expired}); !errors.Is(err, storage.ErrExpired) {
				t.Fatalf("claim with an expired Commit: %v, want ErrExpired", err)
			}
			deleted := group(t, a, "g", past())
			if _, err := s.Delete(testContext(t), []string{deleted.ID}, storage.ReasonAdmin); err != nil {
				t.Fatal(err)
			}
			_, err := s.ClaimSlot(testContext(t), storage.SlotClaim{H: "g", Slot: slot, Commit: deleted})
			if !errors.Is(err, storage.ErrDeleted) || errors.Is(err, storage.ErrSlotTaken) {
				t.Fatalf("claim with a deleted Commit: %v, want ErrDeleted", err)
			}
			c := group(t, a, "g", past())
			wantSlotResult(t, "claim after the refusals", mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: c}), 1, true, "")
		}},
		{"a release naming the holder hands the slot over and flags the holder", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			slot := NewSlot()
			bad, fix, late := group(t, a, "g", past()), group(t, a, "g", past()), group(t, a, "g", past())
			mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: bad})
			release := storage.SlotClaim{H: "g", Slot: slot, Commit: fix, Release: bad.ID}
			res := mustClaim(t, s, release)
			wantSlotResult(t, "release", res, 2, true, bad.ID)
			if res.ReleasedSeq != 1 {
				t.Fatalf("ReleasedSeq = %d, want 1", res.ReleasedSeq)
			}
			if got := released(t, s, "g"); len(got) != 2 || !got[1] || got[2] {
				t.Fatalf("log flags = %v, want seq 1 released and seq 2 not", got)
			}
			for _, sq := range groupLog(t, open(t), "g", 0, 0) {
				want := (*storage.Release)(nil)
				if sq.Seq == 2 {
					want = &storage.Release{ID: bad.ID, Seq: 1}
				}
				if (sq.Releases == nil) != (want == nil) || (want != nil && *sq.Releases != *want) {
					t.Fatalf("seq %d releases %+v, want %+v", sq.Seq, sq.Releases, want)
				}
			}
			if !stored(t, s, bad.ID) {
				t.Fatal("the released holder is no longer served")
			}
			// The retry of the release reports it again; a plain retry does not.
			res = mustClaim(t, open(t), release)
			wantSlotResult(t, "release retry", res, 2, false, bad.ID)
			if res.ReleasedSeq != 1 {
				t.Fatalf("ReleasedSeq of the retry = %d, want 1", res.ReleasedSeq)
			}
			wantSlotResult(t, "plain retry", mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: fix}), 2, false, "")
			claimTaken(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: late}, fix.ID)
			// The released holder itself cannot take the slot back.
			claimTaken(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: bad}, fix.ID)
			if n := lastSeq(t, s, "g"); n != 2 {
				t.Fatalf("LastSeq = %d, want 2", n)
			}
		}},
		{"a release naming anything but the holder is refused and names the holder", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			slot := NewSlot()
			first, second := group(t, a, "g", past()), group(t, a, "g", past())
			mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: first})
			wrong := group(t, a, "g", past())
			claimTaken(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: wrong, Release: NewSlot()}, first.ID)
			if stored(t, s, wrong.ID) {
				t.Fatal("a refused release stored its Commit")
			}
			saveTaken(t, s, wrong, first.ID)
			mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: second, Release: first.ID})
			// first is released already: naming it again is refused, and the
			// refusal (and a bare re-send) names the holder now.
			again := group(t, a, "g", past())
			claimTaken(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: again, Release: first.ID}, second.ID)
			saveTaken(t, s, again, second.ID)
			saveTaken(t, s, wrong, second.ID)
			if got := released(t, s, "g"); len(got) != 2 || !got[1] || got[2] {
				t.Fatalf("log flags = %v, want seq 1 released and seq 2 not", got)
			}
		}},
		{"a release claim for a free slot is a plain claim", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			slot := NewSlot()
			c := group(t, a, "g", past())
			res := mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: c, Release: NewSlot()})
			wantSlotResult(t, "release on a free slot", res, 1, true, "")
			if got := released(t, s, "g"); len(got) != 1 || got[1] {
				t.Fatalf("log flags = %v, want seq 1 not released", got)
			}
		}},
		{"a Commit that lost a slot never holds one, also when it is stored as a bare event", func(t *testing.T, open Opener) {
			s, other := open(t), open(t)
			a := NewAuthor(t)
			slot, free := NewSlot(), NewSlot()
			winner := group(t, a, "g", past())
			mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: winner})
			bare, unstored := group(t, a, "g", past()), group(t, a, "g", past())
			if res := mustSave(t, s, bare); res.Seq != 2 {
				t.Fatalf("bare Save seq = %d, want 2", res.Seq)
			}
			claimTaken(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: bare}, winner.ID)
			claimTaken(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: unstored}, winner.ID)
			for _, h := range []storage.Store{s, other} {
				for _, loser := range []*nostr.Event{bare, unstored} {
					// Not through a release of the holder of its own slot...
					claimTaken(t, h, storage.SlotClaim{H: "g", Slot: slot, Commit: loser, Release: winner.ID}, winner.ID)
					// ...nor on a free slot, plain or release.
					claimLost(t, h, storage.SlotClaim{H: "g", Slot: free, Commit: loser}, slot, winner.ID)
					claimLost(t, h, storage.SlotClaim{H: "g", Slot: free, Commit: loser, Release: winner.ID}, slot, winner.ID)
				}
			}
			// The holder was not released, the free slot stays free, and the
			// bare loser is a plain event of the log.
			if got := released(t, s, "g"); len(got) != 2 || got[1] || got[2] {
				t.Fatalf("log flags = %v, want seqs 1 and 2, none released", got)
			}
			wantSlotResult(t, "the free slot", mustClaim(t, s, storage.SlotClaim{H: "g", Slot: free, Commit: group(t, a, "g", past())}), 3, true, "")
			if res := saveFails(t, s, bare, storage.ErrDuplicate); res.Seq != 2 {
				t.Fatalf("bare re-send seq = %d, want 2", res.Seq)
			}
			saveTaken(t, other, unstored, winner.ID)
		}},
		{"a released holder and a refused release's replacement count as losers of the slot", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			slot := NewSlot()
			bad, fix, wrongFix := group(t, a, "g", past()), group(t, a, "g", past()), group(t, a, "g", past())
			mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: bad})
			mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: fix, Release: bad.ID})
			// A second release naming bad is refused; its replacement lost.
			claimTaken(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: wrongFix, Release: bad.ID}, fix.ID)
			for _, lost := range []*nostr.Event{bad, wrongFix} {
				claimLost(t, s, storage.SlotClaim{H: "g", Slot: NewSlot(), Commit: lost}, slot, fix.ID)
			}
		}},
		{"a Commit holds at most one slot, also one it took through a release", func(t *testing.T, open Opener) {
			s, other := open(t), open(t)
			a := NewAuthor(t)
			first, second, third := NewSlot(), NewSlot(), NewSlot()
			c := group(t, a, "g", past())
			mustClaim(t, s, storage.SlotClaim{H: "g", Slot: first, Commit: c})
			claimHolds(t, other, storage.SlotClaim{H: "g", Slot: second, Commit: c}, first)
			// Took a slot through a release: holds that one.
			bad, fix := group(t, a, "g", past()), group(t, a, "g", past())
			mustClaim(t, s, storage.SlotClaim{H: "g", Slot: second, Commit: bad})
			mustClaim(t, s, storage.SlotClaim{H: "g", Slot: second, Commit: fix, Release: bad.ID})
			claimHolds(t, s, storage.SlotClaim{H: "g", Slot: third, Commit: fix}, second)
			claimHolds(t, other, storage.SlotClaim{H: "g", Slot: first, Commit: fix, Release: c.ID}, second)
			// Nothing changed: c still holds first, and third is free.
			wantSlotResult(t, "retry of c", mustClaim(t, s, storage.SlotClaim{H: "g", Slot: first, Commit: c}), 1, false, "")
			wantSlotResult(t, "third", mustClaim(t, s, storage.SlotClaim{H: "g", Slot: third, Commit: group(t, a, "g", past())}), 4, true, "")
			// In another group, the same Commit id cannot exist (h is part
			// of its id), so the rule is per group.
		}},
		{"one Commit claimed on two free slots at once from two handles holds exactly one", func(t *testing.T, open Opener) {
			handles := []storage.Store{open(t), open(t)}
			a := NewAuthor(t)
			for round := range 10 {
				c := group(t, a, "g", past())
				slots := []string{NewSlot(), NewSlot()}
				errs := make([]error, 2)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range 2 {
					wg.Go(func() {
						<-start
						_, errs[i] = handles[i].ClaimSlot(testContext(t), storage.SlotClaim{H: "g", Slot: slots[i], Commit: c})
					})
				}
				close(start)
				wg.Wait()
				won := 0
				for i, err := range errs {
					switch {
					case err == nil:
						won++
					case errors.Is(err, storage.ErrCommitHolds):
						var holds *storage.CommitHoldsError
						if !errors.As(err, &holds) || holds.Slot != slots[1-i] {
							t.Fatalf("round %d: %v does not name the other slot", round, err)
						}
					default:
						t.Fatalf("round %d: claim %d = %v", round, i, err)
					}
				}
				if won != 1 {
					t.Fatalf("round %d: the Commit holds %d slots, want 1", round, won)
				}
			}
		}},
		{"claims racing on one slot from two handles leave exactly one holder", func(t *testing.T, open Opener) {
			handles := []storage.Store{open(t), open(t)}
			a := NewAuthor(t)
			slot := NewSlot()
			mustSave(t, handles[0], group(t, a, "g", past()))
			const n = 16
			commits := make([]*nostr.Event, n)
			for i := range commits {
				commits[i] = group(t, a, "g", past())
			}
			results := make([]storage.SlotResult, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					results[i], errs[i] = handles[i%2].ClaimSlot(testContext(t), storage.SlotClaim{H: "g", Slot: slot, Commit: commits[i]})
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i, err := range errs {
				if err == nil {
					if winner >= 0 {
						t.Fatalf("claims %d and %d both won", winner, i)
					}
					winner = i
				}
			}
			if winner < 0 {
				t.Fatalf("no claim won: %v", errors.Join(errs...))
			}
			wantSlotResult(t, "the winner", results[winner], 2, true, "")
			for i, err := range errs {
				if i == winner {
					continue
				}
				wantTaken(t, "a losing claim", err, commits[winner].ID)
				saveTaken(t, handles[(i+1)%2], commits[i], commits[winner].ID)
			}
			if got := groupLog(t, handles[1], "g", 1, 0); len(got) != 1 || got[0].Event.ID != commits[winner].ID {
				t.Fatalf("log after seq 1 = %+v, want only the winner", got)
			}
			if n := lastSeq(t, handles[0], "g"); n != 2 {
				t.Fatalf("LastSeq = %d, want 2", n)
			}
		}},
		{"DeleteGroupEvents drops slot records older than the cutoff", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			slot := NewSlot()
			holder, loser := group(t, a, "g", nostr.Now()-10), group(t, a, "g", nostr.Now()-10)
			mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: holder})
			claimTaken(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: loser}, holder.ID)
			// Records taken after the cutoff stay.
			if _, err := s.DeleteGroupEvents(testContext(t), time.Now().Add(-time.Hour)); err != nil {
				t.Fatalf("DeleteGroupEvents: %v", err)
			}
			saveTaken(t, s, loser, holder.ID)
			claimTaken(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: group(t, a, "g", nostr.Now())}, holder.ID)

			dels, err := s.DeleteGroupEvents(testContext(t), time.Now().Add(time.Minute))
			if err != nil {
				t.Fatalf("DeleteGroupEvents: %v", err)
			}
			equalDeletions(t, "DeleteGroupEvents", dels, []storage.Deletion{deletion(holder, storage.ReasonRetention)})
			// The slot is free again and numbering goes on; the loser's
			// record is gone, so its bare Save is a plain refusal.
			next := group(t, a, "g", nostr.Now())
			wantSlotResult(t, "claim after retention", mustClaim(t, s, storage.SlotClaim{H: "g", Slot: slot, Commit: next}), 2, true, "")
			_, err = s.Save(testContext(t), loser)
			if !errors.Is(err, storage.ErrDeleted) || errors.Is(err, storage.ErrSlotTaken) {
				t.Fatalf("bare Save of the old loser = %v, want ErrDeleted", err)
			}
		}},
	}
}
