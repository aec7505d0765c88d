package keypackages

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

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
	// events.
	KeyPackages int64 `json:"keypackages"`
	// Slots counts kind 30443 events (one per d slot); Legacy kind 443.
	Slots  int64 `json:"slots"`
	Legacy int64 `json:"legacy"`
	// LastResort counts KeyPackages marked last resort; nil when the author
	// has more than supplyScanLimit and it was not computed.
	LastResort *int64 `json:"last_resort"`
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
		zero := int64(0)
		sup.LastResort = &zero
		return sup, nil
	}
	var lastResort int64
	scanned := int64(0)
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
		if markedLastResort(ev) {
			lastResort++
		}
	}
	// Events may come and go between the counts and the scan; a full scan
	// is the truth for last resort.
	if scanned < supplyScanLimit {
		sup.LastResort = &lastResort
	}
	return sup, nil
}

// markedLastResort parses a stored KeyPackage (already validated on
// ingest, so signatures are not checked again) and reports whether it is
// marked last resort.
func markedLastResort(ev *nostr.Event) bool {
	b, err := decodeContent(ev.Kind, ev.Content, ev.Tags)
	if err != nil {
		return false
	}
	kp, _, err := parseKeyPackage(b)
	if err != nil {
		return false
	}
	return isLastResort(kp)
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
