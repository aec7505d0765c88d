package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/storage"
)

// ClaimsOpener opens a handle on one set of hand-out claims (as another
// relay instance would); handles are closed by t.Cleanup.
type ClaimsOpener func(t *testing.T) storage.HandoutClaims

// RunHandoutClaims runs the hand-out claim cases against an implementation
// of storage.HandoutClaims that is not a Store's (an in-process one, say);
// newClaims creates fresh, empty claims for each case. Run covers every
// Store's HandoutClaims.
func RunHandoutClaims(t *testing.T, newClaims func(t *testing.T) ClaimsOpener) {
	for _, c := range claimCases() {
		t.Run(c.name, func(t *testing.T) { c.run(t, newClaims(t)) })
	}
}

type claimCase struct {
	name string
	run  func(t *testing.T, open ClaimsOpener)
}

// storeClaimCases adapts the claim cases to the Store suite.
func storeClaimCases() []testCase {
	var out []testCase
	for _, c := range claimCases() {
		out = append(out, testCase{c.name, func(t *testing.T, open Opener) {
			c.run(t, func(t *testing.T) storage.HandoutClaims { return open(t).HandoutClaims() })
		}})
	}
	return out
}

// candidates returns n KeyPackages to hand out, each with its own ref and
// event id.
func candidates(n int) []storage.HandoutClaim {
	out := make([]storage.HandoutClaim, n)
	for i := range out {
		out[i] = storage.HandoutClaim{Ref: newRef(), EventID: newRef()}
	}
	return out
}

func mustHandOut(t *testing.T, c storage.HandoutClaims, requester string, cands []storage.HandoutClaim, until time.Time) (storage.HandoutClaim, bool) {
	t.Helper()
	got, ok, err := c.Claim(testContext(t), requester, cands, until)
	if err != nil {
		t.Fatalf("Claim(%.8s): %v", requester, err)
	}
	return got, ok
}

func claimCases() []claimCase {
	return []claimCase{
		{"each requester gets the first free KeyPackage, and again the same one", func(t *testing.T, open ClaimsOpener) {
			c := open(t)
			alice, bob, carol := newRef(), newRef(), newRef()
			cands := candidates(2)
			until := time.Now().Add(time.Hour)
			got, ok := mustHandOut(t, c, alice, cands, until)
			if !ok || got.Ref != cands[0].Ref || got.EventID != cands[0].EventID || got.Requester != alice {
				t.Fatalf("alice's claim = %+v, %v; want the first candidate", got, ok)
			}
			if got, ok = mustHandOut(t, c, bob, cands, until); !ok || got.Ref != cands[1].Ref {
				t.Fatalf("bob's claim = %+v, %v; want the second candidate", got, ok)
			}
			if got, ok = mustHandOut(t, c, carol, cands, until); ok {
				t.Fatalf("carol got %+v although every candidate is held", got)
			}
			// Asking again, even with the candidates reordered and new ones
			// first, returns what alice holds.
			again := append(candidates(1), cands[1], cands[0])
			if got, ok = mustHandOut(t, c, alice, again, until); !ok || got.Ref != cands[0].Ref {
				t.Fatalf("alice's second claim = %+v, %v; want the one she holds", got, ok)
			}
			// Another handle sees the same claims.
			if got, ok = mustHandOut(t, open(t), bob, cands, until); !ok || got.Ref != cands[1].Ref {
				t.Fatalf("bob's claim through another handle = %+v, %v; want the one he holds", got, ok)
			}
		}},
		{"an expired claim is listed and keeps its KeyPackage from everyone until released", func(t *testing.T, open ClaimsOpener) {
			c := open(t)
			alice, bob := newRef(), newRef()
			cands := candidates(1)
			until := time.Now().Add(50 * time.Millisecond)
			if _, ok := mustHandOut(t, c, alice, cands, until); !ok {
				t.Fatal("alice got nothing")
			}
			if exp, err := c.Expired(testContext(t), time.Now()); err != nil || len(exp) != 0 {
				t.Fatalf("Expired before the end = %+v, %v; want none", exp, err)
			}
			time.Sleep(time.Until(until) + 10*time.Millisecond)
			exp, err := c.Expired(testContext(t), time.Now())
			if err != nil || len(exp) != 1 || exp[0].Ref != cands[0].Ref || exp[0].EventID != cands[0].EventID || exp[0].Requester != alice {
				t.Fatalf("Expired = %+v, %v; want alice's claim", exp, err)
			}
			// Lapsed: alice does not get it back, nor does bob.
			for _, who := range []string{alice, bob} {
				if got, ok := mustHandOut(t, c, who, cands, time.Now().Add(time.Hour)); ok {
					t.Fatalf("a lapsed claim's KeyPackage was handed out again: %+v", got)
				}
			}
			if err := c.Release(testContext(t), []string{cands[0].Ref}); err != nil {
				t.Fatalf("Release: %v", err)
			}
			if exp, err := c.Expired(testContext(t), time.Now()); err != nil || len(exp) != 0 {
				t.Fatalf("Expired after Release = %+v, %v; want none", exp, err)
			}
			if got, ok := mustHandOut(t, c, bob, cands, time.Now().Add(time.Hour)); !ok || got.Ref != cands[0].Ref {
				t.Fatalf("bob's claim after the release = %+v, %v", got, ok)
			}
		}},
		{"concurrent claims on two handles: no KeyPackage to two requesters, one per requester", func(t *testing.T, open ClaimsOpener) {
			handles := []storage.HandoutClaims{open(t), open(t)}
			const requesters, callsEach = 6, 4
			cands := candidates(4)
			var who []string
			for range requesters {
				who = append(who, newRef())
			}
			until := time.Now().Add(time.Hour)
			type result struct {
				requester, ref string
				ok             bool
				err            error
			}
			results := make(chan result, requesters*callsEach)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i, r := range who {
				for j := range callsEach {
					wg.Go(func() {
						<-start
						got, ok, err := handles[(i+j)%2].Claim(testContext(t), r, cands, until)
						results <- result{r, got.Ref, ok, err}
					})
				}
			}
			close(start)
			wg.Wait()
			close(results)
			holder := map[string]string{} // ref -> requester
			held := map[string]string{}   // requester -> ref
			granted := 0
			for res := range results {
				if res.err != nil {
					t.Fatalf("Claim: %v", res.err)
				}
				if !res.ok {
					continue
				}
				granted++
				if h, ok := holder[res.ref]; ok && h != res.requester {
					t.Fatalf("KeyPackage %.8s handed to two requesters", res.ref)
				}
				holder[res.ref] = res.requester
				if r, ok := held[res.requester]; ok && r != res.ref {
					t.Fatalf("requester %.8s got two KeyPackages", res.requester)
				}
				held[res.requester] = res.ref
			}
			if len(holder) != len(cands) {
				t.Fatalf("%d KeyPackages handed out, want all %d (granted %d calls)", len(holder), len(cands), granted)
			}
			refs := slices.Collect(func(yield func(string) bool) {
				for ref := range holder {
					if !yield(ref) {
						return
					}
				}
			})
			if err := handles[0].Release(testContext(t), refs); err != nil {
				t.Fatalf("Release: %v", err)
			}
		}},
		{"an empty candidate list claims nothing", func(t *testing.T, open ClaimsOpener) {
			if got, ok := mustHandOut(t, open(t), newRef(), nil, time.Now().Add(time.Hour)); ok {
				t.Fatalf("Claim(nothing) = %+v", got)
			}
		}},
		{"claims persist for other handles until released", func(t *testing.T, open ClaimsOpener) {
			c := open(t)
			cands := candidates(3)
			alice := newRef()
			for i := range cands {
				if _, ok := mustHandOut(t, c, fmt.Sprint(alice[:63], i), cands, time.Now().Add(time.Duration(i+1)*time.Millisecond)); !ok {
					t.Fatalf("claim %d failed", i)
				}
			}
			time.Sleep(10 * time.Millisecond)
			exp, err := open(t).Expired(testContext(t), time.Now())
			if err != nil || len(exp) != 3 {
				t.Fatalf("Expired on another handle = %+v, %v; want 3", exp, err)
			}
			for i := 1; i < len(exp); i++ {
				if exp[i].Until.Before(exp[i-1].Until) {
					t.Fatalf("Expired is not oldest first: %+v", exp)
				}
			}
		}},
	}
}
