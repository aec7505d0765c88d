package ordering

import (
	"context"
	"fmt"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// ExtCommitSlots names the commit-slot extension in NIP-11.
const ExtCommitSlots = "commit_slots/1"

// Slots is the relay side of commit slots (docs/commit-slots.md): the
// server's SaveHook, an envelope hook, for kind 20445 claims. It checks a
// claim and the Commit it carries, lets the store arbitrate the slot
// (storage.Store.ClaimSlot), and hands the Commit, never the claim, to the
// server to broadcast.
type Slots struct {
	// MaxGroupContent is the largest kind 445 content accepted
	// (policy.Limits.MaxGroupContentLength).
	MaxGroupContent int
	// Retention refuses Commits older than the group retention, as bare
	// kind 445 admission does (0: any age).
	Retention time.Duration
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

// Save is SaveEnvelope without the envelope's extras.
func (s Slots) Save(ctx context.Context, st storage.Store, ev *nostr.Event) (storage.Result, error) {
	_, res, _, err := s.SaveEnvelope(ctx, st, ev)
	return res, err
}

// SaveEnvelope arbitrates ev's slot. The OK message is "seq:<n>", or
// "seq:<n> released:<holder id>" for a release; the Commit is returned for
// broadcast only when this call stored it.
func (s Slots) SaveEnvelope(ctx context.Context, st storage.Store, ev *nostr.Event) (*nostr.Event, storage.Result, string, error) {
	c, err := s.Parse(ev)
	if err != nil {
		return nil, storage.Result{}, "", err
	}
	r, err := st.ClaimSlot(ctx, storage.SlotClaim{H: c.H, Slot: c.Slot, Commit: c.Commit, Release: c.Release})
	if err != nil {
		return nil, r.Result, "", fmt.Errorf("ordering: claim slot: %w", err)
	}
	msg := fmt.Sprintf("seq:%d", r.Seq)
	if r.Released != "" {
		msg += " released:" + r.Released
	}
	var carried *nostr.Event
	if r.Stored {
		carried = c.Commit
	}
	return carried, r.Result, msg, nil
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
	if s.Retention > 0 {
		now := time.Now
		if s.Now != nil {
			now = s.Now
		}
		if time.Unix(int64(inner.CreatedAt), 0).Before(now().Add(-s.Retention)) {
			return Claim{}, refusal("invalid: the claimed Commit is older than this relay keeps group events")
		}
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
