package keypackages

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// DefaultClaimTTL is how long a handed-out KeyPackage stays claimed before
// it is deleted, by default.
const DefaultClaimTTL = 5 * time.Minute

// Claims records which requester holds which handed-out KeyPackage, and
// until when. MemoryClaims keeps them in one process; several relay
// instances sharing a store need a shared implementation (Redis, say),
// which is why every method takes a context and may fail.
type Claims interface {
	// Claim claims eventID for requester until the given time. It reports
	// true when requester now holds it (a new claim, or requester's own
	// earlier claim, whose deadline is kept) and false when someone else
	// holds it or the claim has lapsed.
	Claim(ctx context.Context, eventID, requester string, until time.Time) (bool, error)
	// HeldBy returns the ids among ids that requester holds unexpired.
	HeldBy(ctx context.Context, requester string, ids []string) ([]string, error)
	// Claimed returns the ids among ids that anyone holds (expired or not:
	// a lapsed claim is about to be deleted and is handed to nobody).
	Claimed(ctx context.Context, ids []string) ([]string, error)
	// Expired returns the ids whose claim ended at or before now.
	Expired(ctx context.Context, now time.Time) ([]string, error)
	// Release forgets the claims on ids, once their events are deleted.
	// Until then a lapsed claim keeps its event from being handed out.
	Release(ctx context.Context, ids []string) error
}

// MemoryClaims is the in-process Claims. Its zero value is not usable; use
// NewMemoryClaims.
type MemoryClaims struct {
	now func() time.Time

	mu     sync.Mutex
	claims map[string]claim
}

type claim struct {
	requester string
	until     time.Time
}

// NewMemoryClaims returns empty in-process claims; now may be nil
// (time.Now).
func NewMemoryClaims(now func() time.Time) *MemoryClaims {
	if now == nil {
		now = time.Now
	}
	return &MemoryClaims{now: now, claims: make(map[string]claim)}
}

// Claim implements Claims.
func (m *MemoryClaims) Claim(_ context.Context, eventID, requester string, until time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.claims[eventID]
	if !ok {
		m.claims[eventID] = claim{requester: requester, until: until}
		return true, nil
	}
	return c.requester == requester && m.now().Before(c.until), nil
}

// HeldBy implements Claims.
func (m *MemoryClaims) HeldBy(_ context.Context, requester string, ids []string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var out []string
	for _, id := range ids {
		if c, ok := m.claims[id]; ok && c.requester == requester && now.Before(c.until) {
			out = append(out, id)
		}
	}
	return out, nil
}

// Claimed implements Claims.
func (m *MemoryClaims) Claimed(_ context.Context, ids []string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, id := range ids {
		if _, ok := m.claims[id]; ok {
			out = append(out, id)
		}
	}
	return out, nil
}

// Expired implements Claims.
func (m *MemoryClaims) Expired(_ context.Context, now time.Time) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for id, c := range m.claims {
		if !now.Before(c.until) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Release implements Claims.
func (m *MemoryClaims) Release(_ context.Context, ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		delete(m.claims, id)
	}
	return nil
}

// HandoutConfig configures a Handout.
type HandoutConfig struct {
	// Claims records claims (default: NewMemoryClaims(nil)).
	Claims Claims
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
// gets it) and deleted when the claim ends. It satisfies server.ReqHandler
// without importing the server.
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
	var lastResort, candidates []*nostr.Event
	for ev, err := range st.Query(ctx, f) {
		if err != nil {
			return nil, fmt.Errorf("keypackages: hand-out query: %w", err)
		}
		if markedLastResort(ev) {
			lastResort = append(lastResort, ev)
		} else {
			candidates = append(candidates, ev)
		}
	}
	// Query yields newest first; hand out the oldest first.
	slices.Reverse(candidates)
	ids := make([]string, len(candidates))
	for i, ev := range candidates {
		ids[i] = ev.ID
	}
	held, err := h.cfg.Claims.HeldBy(ctx, requester, ids)
	if err != nil {
		return nil, fmt.Errorf("keypackages: hand-out claims: %w", err)
	}
	if len(held) > 0 {
		// An idempotent retry: the one requester already holds.
		for _, ev := range candidates {
			if ev.ID == held[0] {
				return append([]*nostr.Event{ev}, lastResort...), nil
			}
		}
	}
	claimed, err := h.cfg.Claims.Claimed(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("keypackages: hand-out claims: %w", err)
	}
	until := h.cfg.Now().Add(h.cfg.ClaimTTL)
	for _, ev := range candidates {
		if slices.Contains(claimed, ev.ID) {
			continue
		}
		ok, err := h.cfg.Claims.Claim(ctx, ev.ID, requester, until)
		if err != nil {
			return nil, fmt.Errorf("keypackages: hand-out claim: %w", err)
		}
		if ok {
			return append([]*nostr.Event{ev}, lastResort...), nil
		}
	}
	// Supply exhausted: the last-resort ones are what is left.
	return lastResort, nil
}

// SweepInterval is how often SweepClaims should run: often enough that a
// claim outlives its ttl by at most a tenth of it (at least 100ms).
func (h *Handout) SweepInterval() time.Duration {
	return max(h.cfg.ClaimTTL/10, 100*time.Millisecond)
}

// SweepClaims deletes the KeyPackages whose claim ended at or before now
// and returns what the store removed. Claims are released only after the
// delete succeeds, so a failed one is retried by the next sweep and the
// KeyPackage is never handed out twice meanwhile.
func (h *Handout) SweepClaims(ctx context.Context, st storage.Store, now time.Time) ([]storage.Deletion, error) {
	ids, err := h.cfg.Claims.Expired(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("keypackages: expired claims: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	ds, err := st.Delete(ctx, ids, storage.ReasonClaimed)
	if err != nil {
		return nil, fmt.Errorf("keypackages: deleting claimed KeyPackages: %w", err)
	}
	if err := h.cfg.Claims.Release(ctx, ids); err != nil {
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
