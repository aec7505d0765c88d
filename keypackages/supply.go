package keypackages

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/burrow-relay/burrow/marmot"
	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// supplyPath is where Routes serves Supply.
const supplyPath = "/keypackages/supply"

// supplyScanLimit bounds how many stored KeyPackages Supply parses to count
// last-resort ones; beyond it LastResort is left unknown.
const supplyScanLimit = 500

// Supply is how many usable KeyPackages the relay holds for one author:
// counts and timestamps of public events, never their content.
type Supply struct {
	PubKey string `json:"pubkey"`
	// KeyPackages counts the author's stored, unexpired 443 and 30443
	// events (twins each count).
	KeyPackages int64 `json:"keypackages"`
	// Slots counts kind 30443 events (one per d slot); Legacy kind 443.
	Slots  int64 `json:"slots"`
	Legacy int64 `json:"legacy"`
	// LastResort counts distinct KeyPackages marked last resort; nil when
	// the author has more than supplyScanLimit and it was not computed.
	LastResort *int64 `json:"last_resort"`
	// Distinct counts distinct KeyPackages: twins (a 443 and a 30443
	// carrying one KeyPackage) count once, as the slot cap counts them;
	// nil when not computed, as for LastResort.
	Distinct *int64 `json:"distinct"`
	// NewestCreatedAt is the created_at of the newest one; nil when none.
	NewestCreatedAt *int64 `json:"newest_created_at"`
}

// SupplyOf computes pubkey's KeyPackage supply from st.
func SupplyOf(ctx context.Context, st storage.Store, pubkey string) (Supply, error) {
	sup := Supply{PubKey: pubkey}
	var err error
	if sup.Slots, err = st.Count(ctx, nostr.Filter{Authors: []string{pubkey}, Kinds: []int{KindKeyPackage}}); err != nil {
		return sup, err
	}
	if sup.Legacy, err = st.Count(ctx, nostr.Filter{Authors: []string{pubkey}, Kinds: []int{KindLegacyKeyPackage}}); err != nil {
		return sup, err
	}
	sup.KeyPackages = sup.Slots + sup.Legacy
	if sup.KeyPackages == 0 {
		zero, none := int64(0), int64(0)
		sup.LastResort, sup.Distinct = &zero, &none
		return sup, nil
	}
	var lastResort int64
	scanned := int64(0)
	refs := make(map[string]bool)
	f := nostr.Filter{Authors: []string{pubkey}, Kinds: []int{KindLegacyKeyPackage, KindKeyPackage}, Limit: supplyScanLimit}
	for ev, qerr := range st.Query(ctx, f) {
		if qerr != nil {
			return sup, qerr
		}
		if scanned == 0 {
			ts := int64(ev.CreatedAt)
			sup.NewestCreatedAt = &ts
		}
		scanned++
		st, ok := readStored(ev)
		if !ok || refs[st.ref] {
			continue
		}
		refs[st.ref] = true
		if st.lastResort {
			lastResort++
		}
	}
	// Events may come and go between the counts and the scan; a full scan
	// is the truth for last resort.
	if scanned < supplyScanLimit {
		distinct := int64(len(refs))
		sup.LastResort, sup.Distinct = &lastResort, &distinct
	}
	return sup, nil
}

// storedKeyPackage is what the hand-out and the supply need of a stored
// KeyPackage event.
type storedKeyPackage struct {
	ref        string // KeyPackageRef, lowercase hex: twins share it
	lastResort bool
}

// readStored parses a stored KeyPackage event, already validated on
// ingest, so signatures are not checked again. ok is false for content
// that does not parse (never stored by this relay's rules).
func readStored(ev *nostr.Event) (storedKeyPackage, bool) {
	ref, lastResort, err := marmot.ReadKeyPackageRef(ev)
	if err != nil {
		return storedKeyPackage{}, false
	}
	return storedKeyPackage{ref: ref, lastResort: lastResort}, true
}

// Routes serves GET /keypackages/supply?pubkey=<hex>: the author's Supply
// as JSON. It needs no authentication, since it counts public events.
func (p Policy) Routes(st storage.Store) map[string]http.Handler {
	return map[string]http.Handler{"GET " + supplyPath: supplyHandler{st}}
}

type supplyHandler struct{ st storage.Store }

func (h supplyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	pk := strings.ToLower(r.URL.Query().Get("pubkey"))
	if !nostr.IsValidPublicKey(pk) {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "pubkey must be 64 hex characters"})
		return
	}
	sup, err := SupplyOf(r.Context(), h.st, pk)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "could not count KeyPackages"})
		return
	}
	_ = json.NewEncoder(w).Encode(sup)
}
