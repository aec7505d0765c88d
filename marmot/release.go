package marmot

import (
	"context"
	"errors"
	"strings"

	"github.com/nbd-wtf/go-nostr"
)

// PublishRelease sends a commit-slot release claim (docs/commit-slots.md
// sections 3 and 4, case 7): holder is the id of the kind 445 Commit that
// holds the slot of the epoch slotKey belongs to and that this member
// cannot process; commit is this member's replacement, built on the same
// epoch. On OK true the replacement holds the slot (OK.Released names the
// holder it released, empty when the slot was free) and the caller applies
// it. Only relays that advertise commit slots understand a release; on
// others it is refused here rather than sent as an ephemeral event that
// proves nothing.
func (c *Client) PublishRelease(ctx context.Context, commit *nostr.Event, slotKey []byte, holder string) (OK, error) {
	if !c.info.Supports(ExtCommitSlots) {
		return OK{}, fail(ErrRejected, nil, "the relay does not advertise %s", ExtCommitSlots)
	}
	if len(holder) != 64 || !isLowerHex(holder) {
		return OK{}, fail(ErrRejected, nil, "holder id %s is not 64 lowercase hex characters", quote(holder))
	}
	return c.publishClaim(ctx, commit, slotKey, nostr.Tags{{"release", holder}})
}

// slotTakenPrefix starts the refusal of a claim whose slot another Commit
// holds (docs/commit-slots.md section 4, case 8).
const slotTakenPrefix = "blocked: slot taken by "

// SlotTaken reads the answer to a refused claim: when the relay said
// "blocked: slot taken by <holder id>", it returns the holder's id (the
// inner kind 445 Commit that won the slot), which the loser fetches and
// processes, or releases when it cannot process it.
func SlotTaken(err error) (holder string, ok bool) {
	var e *Error
	if !errors.As(err, &e) || !errors.Is(e.Check, ErrRejected) {
		return "", false
	}
	id, found := strings.CutPrefix(e.Reason, slotTakenPrefix)
	if !found {
		return "", false
	}
	id, _, _ = strings.Cut(id, " ")
	if len(id) != 64 || !isLowerHex(id) {
		return "", false
	}
	return id, true
}
