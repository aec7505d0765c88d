package server

import (
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy"
	negstorage "github.com/nbd-wtf/go-nostr/nip77/negentropy/storage"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy/storage/vector"

	"github.com/burrow-relay/burrow/storage"
)

// randomKeys are n keys with random ids (so the sums carry across limbs),
// sorted as a session holds them.
func randomKeys(t testing.TB, n int) []storage.Key {
	keys := make([]storage.Key, n)
	for i := range keys {
		keys[i].CreatedAt = int64(1_700_000_000 + i/5)
		if _, err := rand.Read(keys[i].ID[:]); err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(keys, compareKeys)
	return keys
}

// everyIDFingerprint is a range's fingerprint as go-nostr's accumulator
// computes it, one id at a time.
func everyIDFingerprint(keys []storage.Key, begin, end int) string {
	var acc negstorage.Accumulator
	for i := begin; i < end; i++ {
		acc.AddBytes(keys[i].ID[:])
	}
	return acc.GetFingerprint(end - begin)
}

// TestKeyVectorFingerprint: the fingerprint from running sums is the one
// summing every id gives, for ranges short and long, at and between the
// sums' strides, empty and whole.
func TestKeyVectorFingerprint(t *testing.T) {
	const n = 5*keySumStride + 17
	keys := randomKeys(t, n)
	v := newKeyVector(keys)
	ranges := [][2]int{{0, 0}, {0, n}, {0, 1}, {n - 1, n}, {0, keySumStride}, {keySumStride, 3 * keySumStride},
		{1, 2*keySumStride + 2}, {keySumStride - 1, n}, {7, n - 7}, {3 * keySumStride, n}}
	r := mrand.New(mrand.NewPCG(1, 2))
	for range 200 {
		a, b := r.IntN(n+1), r.IntN(n+1)
		ranges = append(ranges, [2]int{min(a, b), max(a, b)})
	}
	for _, rg := range ranges {
		if got, want := v.Fingerprint(rg[0], rg[1]), everyIDFingerprint(keys, rg[0], rg[1]); got != want {
			t.Fatalf("Fingerprint(%d, %d) = %s; summing every id gives %s", rg[0], rg[1], got, want)
		}
	}
}

// TestKeyVectorReconciles: a whole reconciliation against the running
// sums finds exactly the differences, as with go-nostr's own vector.
func TestKeyVectorReconciles(t *testing.T) {
	keys := randomKeys(t, 20_000)
	client := vector.New()
	wantNeed := map[string]bool{}
	for i, k := range keys {
		id := fmt.Sprintf("%x", k.ID)
		if i%97 == 0 {
			wantNeed[id] = true
			continue
		}
		client.Insert(nostr.Timestamp(k.CreatedAt), id)
	}
	client.Seal()
	relay := negentropy.New(newKeyVector(keys), negFrameLimit)
	neg := negentropy.New(client, negFrameLimit)
	got := map[string]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for id := range neg.HaveNots {
			got[id] = true
		}
	}()
	go func() {
		for range neg.Haves {
		}
	}()
	msg := neg.Start()
	for rounds := 0; msg != ""; rounds++ {
		if rounds > 20 {
			t.Fatal("no end after 20 rounds")
		}
		answer, err := negRound(relay, msg)
		if err != nil {
			t.Fatal(err)
		}
		if msg, err = neg.Reconcile(answer); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if len(got) != len(wantNeed) {
		t.Fatalf("the client needs %d ids; want %d", len(got), len(wantNeed))
	}
	for id := range wantNeed {
		if !got[id] {
			t.Fatalf("id %s not found", id)
		}
	}
}

// everyIDVector is keyVector fingerprinting by summing every id, as before
// the running sums: the baseline of BenchmarkNegentropyRelayRound.
type everyIDVector struct{ *keyVector }

func (v everyIDVector) Fingerprint(begin, end int) string {
	return everyIDFingerprint(v.keys, begin, end)
}

// BenchmarkNegentropyRelayRound is the relay's CPU for the first round of
// a reconciliation of a million keys (the client's opening message
// prepared beforehand), with running sums and summing every id.
func BenchmarkNegentropyRelayRound(b *testing.B) {
	keys := randomKeys(b, 1_000_000)
	client := vector.New()
	for i, k := range keys {
		if i%100 != 0 {
			client.Insert(nostr.Timestamp(k.CreatedAt), fmt.Sprintf("%x", k.ID))
		}
	}
	client.Seal()
	open := negentropy.New(client, negFrameLimit).Start()
	for _, tc := range []struct {
		name  string
		store func() negentropy.Storage
	}{
		{"running-sums", func() negentropy.Storage { return newKeyVector(keys) }},
		{"every-id", func() negentropy.Storage { return everyIDVector{newKeyVector(keys)} }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := tc.store()
			for b.Loop() {
				if _, err := negRound(negentropy.New(s, negFrameLimit), open); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
