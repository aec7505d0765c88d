package keypackages

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// DefaultClaimTTL is how long a handed-out KeyPackage stays claimed before
// it is deleted, by default.
const DefaultClaimTTL = 5 * time.Minute

// MemoryClaims is an in-process storage.HandoutClaims, for tests and for
// tools that run without a store. The relay keeps its claims in its store
// (storage.Store.HandoutClaims), shared by every instance and kept across
// restarts. Its zero value is not usable; use NewMemoryClaims.
type MemoryClaims struct {
	now func() time.Time

	mu     sync.Mutex
	claims map[string]storage.HandoutClaim // by ref
}

var _ storage.HandoutClaims = (*MemoryClaims)(nil)

// NewMemoryClaims returns empty in-process claims; now may be nil
// (time.Now).
func NewMemoryClaims(now func() time.Time) *MemoryClaims {
	if now == nil {
		now = time.Now
	}
	return &MemoryClaims{now: now, claims: make(map[string]storage.HandoutClaim)}
}

// Claim implements storage.HandoutClaims.
func (m *MemoryClaims) Claim(_ context.Context, requester string, candidates []storage.HandoutClaim, until time.Time) (storage.HandoutClaim, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for _, c := range candidates {
		if held, ok := m.claims[c.Ref]; ok && held.Requester == requester && now.Before(held.Until) {
			return held, true, nil
		}
	}
	for _, c := range candidates {
		if _, ok := m.claims[c.Ref]; !ok {
			c.Requester, c.Until = requester, until
			m.claims[c.Ref] = c
			return c, true, nil
		}
	}
	return storage.HandoutClaim{}, false, nil
}

// Expired implements storage.HandoutClaims.
func (m *MemoryClaims) Expired(_ context.Context, now time.Time) ([]storage.HandoutClaim, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []storage.HandoutClaim
	for _, c := range m.claims {
		if !now.Before(c.Until) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b storage.HandoutClaim) int {
		if c := a.Until.Compare(b.Until); c != 0 {
			return c
		}
		return strings.Compare(a.Ref, b.Ref)
	})
	return out, nil
}

// Release implements storage.HandoutClaims.
func (m *MemoryClaims) Release(_ context.Context, refs []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ref := range refs {
		delete(m.claims, ref)
	}
	return nil
}

// HandoutConfig configures a Handout.
type HandoutConfig struct {
	// Claims records claims; the relay passes its store's, so that every
	// instance sharing the store sees them (default: NewMemoryClaims(nil),
	// for one process).
	Claims storage.HandoutClaims
	// ClaimTTL is how long a handed-out KeyPackage stays claimed before it
	// is deleted (default DefaultClaimTTL).
	ClaimTTL time.Duration
	// Limiter charges one token per author handed out, keyed by the
	// requester's pubkey (default: no limit).
	Limiter policy.RateLimiter
	// Rate and Burst describe Limiter in NIP-11 (hand-outs per minute).
	Rate  float64
	Burst int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Handout serves REQs for KeyPackages the way RFC 9750's Delivery Service
// hands them out: to an authenticated requester, per author, one unclaimed
// KeyPackage that is not last resort (the oldest first, so supply rotates)
// plus the author's last-resort ones. The handed-out one is claimed for that
// requester (asking again within ClaimTTL returns it again; nobody else
// gets it) and deleted when the claim ends. A KeyPackage published as twins
// (a 443 and a 30443) is one KeyPackage: it is handed out, claimed and
// deleted as one. It satisfies server.ReqHandler without importing the
// server.
type Handout struct {
	cfg HandoutConfig
}

// NewHandout returns a Handout with cfg's defaults filled in.
func NewHandout(cfg HandoutConfig) *Handout {
	if cfg.Claims == nil {
		cfg.Claims = NewMemoryClaims(cfg.Now)
	}
	if cfg.ClaimTTL <= 0 {
		cfg.ClaimTTL = DefaultClaimTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handout{cfg: cfg}
}

// handoutScanLimit bounds how many stored KeyPackages of one author a
// hand-out reads.
const handoutScanLimit = supplyScanLimit

// HandoutRefusal is a REQ the hand-out declines; OKMessage is the CLOSED
// message (auth-required: or rate-limited:).
type HandoutRefusal struct{ msg string }

func (r *HandoutRefusal) Error() string     { return "keypackages: hand-out refused: " + r.msg }
func (r *HandoutRefusal) OKMessage() string { return r.msg }

// Refusals of a hand-out REQ, matched with errors.Is.
var (
	ErrHandoutAuth = &HandoutRefusal{"auth-required: KeyPackage hand-out needs NIP-42 AUTH"}
	ErrHandoutRate = &HandoutRefusal{"rate-limited: too many KeyPackage hand-outs; slow down"}
)

// HandlesReq reports whether a REQ is a hand-out: every filter asks only
// for kinds 443 and/or 30443 of named authors. Anything else (including a
// "limit": 0 filter, which asks for live events only) is a normal REQ.
func (h *Handout) HandlesReq(filters nostr.Filters) bool {
	if len(filters) == 0 {
		return false
	}
	for _, f := range filters {
		if len(f.Authors) == 0 || len(f.Kinds) == 0 || f.LimitZero {
			return false
		}
		for _, k := range f.Kinds {
			if !IsKeyPackageKind(k) {
				return false
			}
		}
	}
	return true
}

// ServeReq returns what the hand-out sends for filters to requester (the
// connection's NIP-42 pubkey, "" when unauthenticated), claiming the
// KeyPackages it hands out. Errors are ErrHandoutAuth, ErrHandoutRate or a
// wrapped store or claims failure.
func (h *Handout) ServeReq(ctx context.Context, st storage.Store, requester string, filters nostr.Filters) ([]*nostr.Event, error) {
	if requester == "" {
		return nil, ErrHandoutAuth
	}
	var out []*nostr.Event
	seen := make(map[string]bool)
	for _, f := range filters {
		for _, author := range f.Authors {
			if h.cfg.Limiter != nil {
				ok, err := h.cfg.Limiter.Allow(ctx, requester)
				// A broken shared limiter must not stop hand-outs.
				if err == nil && !ok {
					return nil, ErrHandoutRate
				}
			}
			af := f
			af.Authors = []string{author}
			af.Limit = handoutScanLimit
			evs, err := h.pick(ctx, st, requester, af)
			if err != nil {
				return nil, err
			}
			for _, ev := range evs {
				if !seen[ev.ID] {
					seen[ev.ID] = true
					out = append(out, ev)
				}
			}
		}
	}
	return out, nil
}

// pick chooses one author's KeyPackages: its last-resort ones and one
// claimed for requester.
func (h *Handout) pick(ctx context.Context, st storage.Store, requester string, f nostr.Filter) ([]*nostr.Event, error) {
	var (
		lastResort []*nostr.Event
		candidates []storage.HandoutClaim
		byRef      = make(map[string]*nostr.Event)
	)
	for ev, err := range st.Query(ctx, f) {
		if err != nil {
			return nil, fmt.Errorf("keypackages: hand-out query: %w", err)
		}
		kp, ok := readStored(ev)
		switch {
		case !ok:
			continue
		case kp.lastResort:
			lastResort = append(lastResort, ev)
		case byRef[kp.ref] == nil:
			// One event per KeyPackage: twins are the same KeyPackage.
			byRef[kp.ref] = ev
			candidates = append(candidates, storage.HandoutClaim{Ref: kp.ref, EventID: ev.ID})
		}
	}
	// Query yields newest first; hand out the oldest first.
	slices.Reverse(candidates)
	got, ok, err := h.cfg.Claims.Claim(ctx, requester, candidates, h.cfg.Now().Add(h.cfg.ClaimTTL))
	if err != nil {
		return nil, fmt.Errorf("keypackages: hand-out claim: %w", err)
	}
	if !ok {
		// Supply exhausted: the last-resort ones are what is left.
		return lastResort, nil
	}
	return append([]*nostr.Event{byRef[got.Ref]}, lastResort...), nil
}

// SweepInterval is how often SweepClaims should run: often enough that a
// claim outlives its ttl by at most a tenth of it (at least 100ms).
func (h *Handout) SweepInterval() time.Duration {
	return max(h.cfg.ClaimTTL/10, 100*time.Millisecond)
}

// SweepClaims deletes the KeyPackages whose claim ended at or before now
// (their twins go with them) and returns what the store removed. Claims are
// released only after the delete succeeds, so a failed one is retried by
// the next sweep and the KeyPackage is never handed out twice meanwhile.
// Instances sharing the claims may sweep the same ones: deleting twice is
// harmless.
func (h *Handout) SweepClaims(ctx context.Context, st storage.Store, now time.Time) ([]storage.Deletion, error) {
	expired, err := h.cfg.Claims.Expired(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("keypackages: expired claims: %w", err)
	}
	if len(expired) == 0 {
		return nil, nil
	}
	ids := make([]string, len(expired))
	refs := make([]string, len(expired))
	for i, c := range expired {
		ids[i], refs[i] = c.EventID, c.Ref
	}
	ds, err := st.Delete(ctx, ids, storage.ReasonClaimed)
	if err != nil {
		return nil, fmt.Errorf("keypackages: deleting claimed KeyPackages: %w", err)
	}
	if err := h.cfg.Claims.Release(ctx, refs); err != nil {
		return ds, fmt.Errorf("keypackages: releasing claims: %w", err)
	}
	return ds, nil
}

// nip11 describes the hand-out for the keypackages NIP-11 field.
func (h *Handout) nip11() map[string]any {
	if h == nil {
		return map[string]any{"enabled": false}
	}
	return map[string]any{
		"enabled":           true,
		"auth_required":     true,
		"claim_ttl_seconds": int64(h.cfg.ClaimTTL.Seconds()),
		"order":             "oldest_first",
		"rate_per_minute":   h.cfg.Rate,
		"burst":             h.cfg.Burst,
	}
}
