package keypackages

import (
	"context"
	"fmt"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

const (
	// DefaultSlotCap is the per-author cap on KeyPackages (kinds 443 and
	// 30443, twins counted once) the relay command uses by default.
	DefaultSlotCap = 10
	// DefaultEvictAfter is how long a KeyPackage must go unrefreshed before
	// a new one at the cap may evict it, by default.
	DefaultEvictAfter = 7 * 24 * time.Hour
)

// maxNotAfter bounds the expiry handed to the store: ts-mls's default
// not_after (2^63-1 seconds) does not fit a time.Time sum, and "never" is
// all it means.
var maxNotAfter = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// Policy is the relay's KeyPackage rules as one piece of the EVENT
// pipeline: it validates kind 443 and 30443 events with Validator and stores
// them with storage.Store.SaveKeyPackage, which applies twins, expiry at
// not_after plus the grace, and the slot cap in the same transaction. It
// satisfies server.SaveHook, server.InfoProvider and server.RouteProvider
// without importing the server; cmd/relay wires all three.
type Policy struct {
	Validator Validator
	// SlotCap caps an author's KeyPackages (storage.KeyPackage.SlotCap:
	// 443s and 30443s alike, twins counted once); zero or negative means
	// no cap.
	SlotCap int
	// EvictAfter is how long the least recently refreshed KeyPackage must
	// have gone unrefreshed before a new one at the cap evicts it; younger
	// ones make the new one fail with storage.ErrSlotCap.
	EvictAfter time.Duration
	// Handout, when set, is the opt-in single-use hand-out serving REQs
	// for KeyPackages; NIP11Field describes it. nil means off.
	Handout *Handout
}

// Handles reports whether ev is a KeyPackage event (kind 443 or 30443).
func (p Policy) Handles(ev *nostr.Event) bool { return IsKeyPackageKind(ev.Kind) }

// Save validates ev and stores it with its KeyPackage rules. A validation
// failure is an *Error (its OKMessage is "invalid: <reason>") and nothing
// is stored; store errors are returned wrapped.
func (p Policy) Save(ctx context.Context, st storage.Store, ev *nostr.Event) (storage.Result, error) {
	info, err := p.Validator.Validate(ev)
	if err != nil {
		return storage.Result{}, err
	}
	res, err := st.SaveKeyPackage(ctx, ev, p.Rules(info))
	if err != nil {
		return res, fmt.Errorf("keypackages: saving kind %d: %w", ev.Kind, err)
	}
	return res, nil
}

// Rules is what the store needs to apply this policy to a validated
// KeyPackage: its ref, when it stops being usable (not_after plus the
// grace), and the slot cap.
func (p Policy) Rules(info Info) storage.KeyPackage {
	kp := storage.KeyPackage{Ref: info.Ref, NotAfter: maxNotAfter}
	grace := p.Validator.grace()
	if info.NotAfter < uint64(maxNotAfter.Unix()) {
		if na := time.Unix(int64(info.NotAfter), 0).UTC().Add(grace); na.Before(maxNotAfter) {
			kp.NotAfter = na
		}
	}
	if p.SlotCap > 0 {
		kp.SlotCap = p.SlotCap
		kp.EvictAfter = max(p.EvictAfter, 0)
	}
	return kp
}

// deletedOn lists the reasons a stored KeyPackage can leave storage under
// this policy.
func (p Policy) deletedOn() []string {
	reasons := []storage.Reason{storage.ReasonDeletionRequest, storage.ReasonReplaced, storage.ReasonTwin,
		storage.ReasonExpired, storage.ReasonEvicted, storage.ReasonVanish, storage.ReasonBanned, storage.ReasonAdmin}
	if p.Handout != nil {
		reasons = append(reasons, storage.ReasonClaimed)
	}
	out := make([]string, len(reasons))
	for i, r := range reasons {
		out[i] = string(r)
	}
	return out
}

// NIP11Field describes the policy in the relay information document, under
// "keypackages". deleted_on lists the reasons a stored KeyPackage leaves
// storage, as the burrow_events_deleted_total metric labels them.
func (p Policy) NIP11Field() (string, any) {
	doc := map[string]any{
		"kinds":                   []int{KindLegacyKeyPackage, KindKeyPackage},
		"validated":               true,
		"lifetime_grace_seconds":  int64(p.Validator.grace().Seconds()),
		"max_lifetime_seconds":    lifetimeSeconds(p.Validator.maxLifetime()),
		"max_lifetime_applies_to": "events with an app_components tag",
		"expire_at_not_after":     true,
		"slot_cap":                max(p.SlotCap, 0),
		"slot_cap_counts":         "keypackages of kinds 443 and 30443 per author, twins once",
		"twins":                   "coexist; deleting one deletes all, and the KeyPackage is tombstoned",
		"evict_after_seconds":     int64(max(p.EvictAfter, 0).Seconds()),
		"supply_endpoint":         supplyPath,
		"handout":                 p.Handout.nip11(),
		"deleted_on":              p.deletedOn(),
	}
	return "keypackages", doc
}

// lifetimeSeconds is the cap in seconds, or nil (JSON null) when there is
// none.
func lifetimeSeconds(d time.Duration) any {
	if d <= 0 {
		return nil
	}
	return int64(d.Seconds())
}
