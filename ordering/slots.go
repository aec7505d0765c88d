package ordering

import (
	"context"
	"fmt"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/server"
	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// ExtCommitSlots names the commit-slot extension in NIP-11.
const ExtCommitSlots = "commit_slots/1"

// Slots is the relay side of commit slots (docs/commit-slots.md): the
// server's EnvelopeHook for kind 20445 claims (wired as a server.Hook's
// Envelope, with its Extensions). It checks a claim and the Commit it
// carries, lets the store arbitrate the slot (storage.Store.ClaimSlot),
// and hands the Commit, never the claim, to the server to broadcast.
//
// Claims pay their way (DESIGN.md "Who may read what, and what every
// request costs"): a claim is an EVENT, charged to its connection and
// address like any other; on top of that every claim draws from its
// group's own bucket (Claims), because any key makes a fresh slot, so an
// outsider who knows a group's h could otherwise add Commits to its log
// without limit. The group's bucket for bare kind 445 events
// (policy.GroupFlood) is a different one, so a flood of claims never
// stops members' other group events, and the Commit a claim carries
// passes the same event limits as a bare one (Limits).
type Slots struct {
	// MaxGroupContent is the largest kind 445 content accepted
	// (policy.Limits.MaxGroupContentLength).
	MaxGroupContent int
	// Retention refuses Commits older than the group retention, as bare
	// kind 445 admission does (0: any age).
	Retention time.Duration
	// Limits, when set, are the relay's event limits: the claimed Commit
	// must pass policy.Limits.EventShape as a bare kind 445 does (tag
	// count, content length, and the created_at window of CreatedAtFuture
	// and CreatedAtPast).
	Limits *policy.Limits
	// Claims, when set, is the per-group bucket of claims: each claim
	// that passes Parse takes one token under "h:"+<group id> before the
	// store decides it, or is refused with "rate-limited:". A limiter
	// failure lets the claim through, as policy.GroupFlood does.
	Claims policy.RateLimiter
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Claim is a parsed, verified commit-slot claim.
type Claim struct {
	H       string
	Slot    string       // the claim's pubkey
	Commit  *nostr.Event // the carried kind 445
	Release string       // holder id named by a release claim, or ""
}

// refusal is a claim refused with its own OK message.
type refusal string

func (r refusal) Error() string     { return string(r) }
func (r refusal) OKMessage() string { return string(r) }

// Handles reports whether ev is a commit-slot claim.
func (s Slots) Handles(ev *nostr.Event) bool { return ev.Kind == KindCommitClaim }

// SaveEnvelope arbitrates ev's slot. The OK message is "seq:<n>", or
// "seq:<n> released:<holder id>" for a release; the Commit is returned for
// broadcast only when this call stored it, with what it releases.
func (s Slots) SaveEnvelope(ctx context.Context, st storage.Store, ev *nostr.Event) (server.Envelope, error) {
	c, err := s.Parse(ev)
	if err != nil {
		return server.Envelope{}, err
	}
	if s.Claims != nil {
		if ok, err := s.Claims.Allow(ctx, "h:"+c.H); err == nil && !ok {
			return server.Envelope{}, refusal("rate-limited: too many commit-slot claims for this group, slow down")
		}
	}
	r, err := st.ClaimSlot(ctx, storage.SlotClaim{H: c.H, Slot: c.Slot, Commit: c.Commit, Release: c.Release})
	if err != nil {
		return server.Envelope{Result: r.Result}, fmt.Errorf("ordering: claim slot: %w", err)
	}
	env := server.Envelope{Result: r.Result, OKMessage: fmt.Sprintf("seq:%d", r.Seq)}
	if r.Released != "" {
		env.OKMessage += " released:" + r.Released
	}
	if r.Stored {
		env.Carried = c.Commit
		if r.Released != "" {
			env.Releases = &storage.Release{ID: r.Released, Seq: r.ReleasedSeq}
		}
	}
	return env, nil
}

// Extensions lists commit_slots/1 for NIP-11.
func (s Slots) Extensions() []string { return []string{ExtCommitSlots} }

// Parse checks a claim (whose own id and signature the server verified):
// tags exactly [h] or [h, release] in either order, content a signed kind
// 445 of the same group that passes the bare kind 445 rules. Failures are
// refusals with an "invalid:" message.
func (s Slots) Parse(ev *nostr.Event) (Claim, error) {
	if ev.Kind != KindCommitClaim {
		return Claim{}, refusal("invalid: a commit-slot claim is kind 20445")
	}
	var c Claim
	c.Slot = ev.PubKey
	for _, tag := range ev.Tags {
		switch {
		case len(tag) == 2 && tag[0] == "h" && c.H == "":
			c.H = tag[1]
		case len(tag) == 2 && tag[0] == "release" && c.Release == "":
			c.Release = tag[1]
		default:
			return Claim{}, refusal(`invalid: a claim's tags are exactly ["h", <group id>] and optionally ["release", <holder id>]`)
		}
	}
	if !policy.IsGroupID(c.H) {
		return Claim{}, refusal("invalid: a claim needs one h tag of 64 lowercase hex characters")
	}
	if ev.Tags.GetFirst([]string{"release"}) != nil && !policy.IsGroupID(c.Release) {
		// Event ids have the group id's shape.
		return Claim{}, refusal("invalid: a release tag names the holder's event id (64 lowercase hex characters)")
	}
	inner := &nostr.Event{}
	if err := inner.UnmarshalJSON([]byte(ev.Content)); err != nil {
		return Claim{}, refusal("invalid: a claim's content must be a signed kind 445 event as JSON")
	}
	if inner.Kind != policy.KindGroupEvent {
		return Claim{}, refusal("invalid: a claim carries a kind 445 Commit")
	}
	if !policy.IsGroupID(inner.ID) || !policy.IsGroupID(inner.PubKey) || len(inner.Sig) != 128 {
		return Claim{}, refusal("invalid: the claimed Commit has a malformed id, pubkey or sig")
	}
	if msg := policy.GroupEventShape(inner, s.MaxGroupContent); msg != "" {
		return Claim{}, refusal(msg + " (claimed Commit)")
	}
	if h := inner.Tags.GetFirst([]string{"h", ""}); (*h)[1] != c.H {
		return Claim{}, refusal("invalid: the claimed Commit belongs to another group than the claim")
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if s.Limits != nil {
		if refused, msg := s.Limits.EventShape(now)(context.Background(), inner); refused {
			return Claim{}, refusal(msg + " (claimed Commit)")
		}
	}
	if s.Retention > 0 && time.Unix(int64(inner.CreatedAt), 0).Before(now().Add(-s.Retention)) {
		return Claim{}, refusal("invalid: the claimed Commit is older than this relay keeps group events")
	}
	if !inner.CheckID() {
		return Claim{}, refusal("invalid: the claimed Commit's id does not match its content")
	}
	if ok, _ := inner.CheckSignature(); !ok {
		return Claim{}, refusal("invalid: the claimed Commit has a bad signature")
	}
	c.Commit = inner
	return c, nil
}
