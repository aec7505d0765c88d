package conformance

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nbd-wtf/go-nostr"
)

func address(k key, kind int, d string) string {
	return strconv.Itoa(kind) + ":" + k.pk + ":" + d
}

// deletion builds a NIP-09 request from k for the given targets.
func (k key) deletion(createdAt int64, tags nostr.Tags) *nostr.Event {
	return k.event(5, createdAt, tags, "conformance: deletion request")
}

func checkDeleteByID(ctx context.Context, e *env) (string, error) {
	k := newKey()
	a := k.event(1, now()-10, nil, "conformance: to delete")
	b := k.event(1, now()-9, nil, "conformance: to keep")
	del := k.deletion(now()-5, nostr.Tags{{"e", a.ID}, {"k", "1"}})
	if err := e.storeAll(ctx, a, b, del); err != nil {
		return "", err
	}
	if err := e.expectExactly(ctx, "ids [deleted kept]", filters(nostr.Filter{IDs: []string{a.ID, b.ID}}), b); err != nil {
		return "", err
	}
	// NIP-09: the deletion request itself stays available.
	return "", e.expectExactly(ctx, "the kind 5 itself",
		filters(nostr.Filter{Authors: []string{k.pk}, Kinds: []int{5}}), del)
}

func checkDeleteByIDOfOthers(ctx context.Context, e *env) (string, error) {
	owner, other := newKey(), newKey()
	ev := owner.event(1, now()-10, nil, "conformance: someone else's")
	if err := e.storeAll(ctx, ev); err != nil {
		return "", err
	}
	answers, err := e.publishAny(ctx, other.deletion(now()-5, nostr.Tags{{"e", ev.ID}, {"k", "1"}}))
	if err != nil {
		return "", err
	}
	if err := e.expectExactly(ctx, "target of another key's deletion",
		filters(nostr.Filter{IDs: []string{ev.ID}}), ev); err != nil {
		return "", err
	}
	return "foreign deletion answered " + answers[0].String(), nil
}

func checkDeleteByAddress(ctx context.Context, e *env) (string, error) {
	k := newKey()
	v := k.event(addrKind, now()-20, slotTags("x"), "{}")
	if err := e.storeAll(ctx, v); err != nil {
		return "", err
	}
	del := k.deletion(now()-10, nostr.Tags{{"a", address(k, addrKind, "x")}, {"k", strconv.Itoa(addrKind)}})
	if err := e.storeAll(ctx, del); err != nil {
		return "", err
	}
	return "", e.expectExactly(ctx, "slot after deletion by address",
		filters(slotFilter(k, addrKind, "x"), nostr.Filter{IDs: []string{v.ID}}))
}

// checkDeleteByAddressSameSecond: NIP-09 deletes versions "up to" the request's created_at,
// so a version from the same second goes too.
func checkDeleteByAddressSameSecond(ctx context.Context, e *env) (string, error) {
	k := newKey()
	t := now() - 10
	v := k.event(addrKind, t, slotTags("x"), "{}")
	del := k.deletion(t, nostr.Tags{{"a", address(k, addrKind, "x")}})
	if err := e.storeAll(ctx, v, del); err != nil {
		return "", err
	}
	return "", e.expectExactly(ctx, "version with the request's own created_at",
		filters(slotFilter(k, addrKind, "x")))
}

func checkDeleteByAddressKeepsNewer(ctx context.Context, e *env) (string, error) {
	k := newKey()
	newer := k.event(addrKind, now()-5, slotTags("x"), "{}")
	if err := e.storeAll(ctx, newer); err != nil {
		return "", err
	}
	answers, err := e.publishAny(ctx, k.deletion(now()-10, nostr.Tags{{"a", address(k, addrKind, "x")}}))
	if err != nil {
		return "", err
	}
	if err := e.expectExactly(ctx, "version newer than the deletion request",
		filters(slotFilter(k, addrKind, "x")), newer); err != nil {
		return "", err
	}
	return "older deletion answered " + answers[0].String(), nil
}

func checkDeleteByAddressThenNewer(ctx context.Context, e *env) (string, error) {
	k := newKey()
	old := k.event(addrKind, now()-20, slotTags("x"), "{}")
	del := k.deletion(now()-10, nostr.Tags{{"a", address(k, addrKind, "x")}})
	newer := k.event(addrKind, now()-5, slotTags("x"), "{}")
	if err := e.storeAll(ctx, old, del); err != nil {
		return "", err
	}
	if err := e.storeAll(ctx, newer); err != nil {
		return "", fmt.Errorf("version newer than a deletion by address: %w", err)
	}
	return "", e.expectExactly(ctx, "slot after a newer version", filters(slotFilter(k, addrKind, "x")), newer)
}

func checkDeleteByAddressBoundByTag(ctx context.Context, e *env) (string, error) {
	k := newKey()
	x := k.event(addrKind, now()-20, slotTags("x"), "{}")
	y := k.event(addrKind, now()-20, slotTags("y"), "{}")
	del := k.deletion(now()-10, nostr.Tags{{"a", address(k, addrKind, "x")}})
	if err := e.storeAll(ctx, x, y, del); err != nil {
		return "", err
	}
	return "", e.expectExactly(ctx, "author's addressable events after deleting d=x",
		filters(nostr.Filter{Authors: []string{k.pk}, Kinds: []int{addrKind}}), y)
}

func checkDeleteByAddressOfOthers(ctx context.Context, e *env) (string, error) {
	owner, other := newKey(), newKey()
	x := owner.event(addrKind, now()-20, slotTags("x"), "{}")
	if err := e.storeAll(ctx, x); err != nil {
		return "", err
	}
	answers, err := e.publishAny(ctx, other.deletion(now()-10, nostr.Tags{{"a", address(owner, addrKind, "x")}}))
	if err != nil {
		return "", err
	}
	if err := e.expectExactly(ctx, "slot after another key's deletion",
		filters(slotFilter(owner, addrKind, "x")), x); err != nil {
		return "", err
	}
	return "foreign deletion answered " + answers[0].String(), nil
}

func checkResubmitDeletedByID(ctx context.Context, e *env) (string, error) {
	k := newKey()
	ev := k.event(1, now()-10, nil, "conformance: deleted, then re-sent")
	del := k.deletion(now()-5, nostr.Tags{{"e", ev.ID}})
	if err := e.storeAll(ctx, ev, del); err != nil {
		return "", err
	}
	answers, err := e.publishAny(ctx, ev)
	if err != nil {
		return "", err
	}
	if err := e.expectExactly(ctx, "re-sent deleted event", filters(nostr.Filter{IDs: []string{ev.ID}})); err != nil {
		return "", fmt.Errorf("%w (re-send answered %s)", err, answers[0])
	}
	return "re-send answered " + answers[0].String(), nil
}

func checkResubmitDeletedByAddress(ctx context.Context, e *env) (string, error) {
	k := newKey()
	v := k.event(addrKind, now()-20, slotTags("x"), "{}")
	del := k.deletion(now()-10, nostr.Tags{{"a", address(k, addrKind, "x")}})
	if err := e.storeAll(ctx, v, del); err != nil {
		return "", err
	}
	answers, err := e.publishAny(ctx, v)
	if err != nil {
		return "", err
	}
	if err := e.expectExactly(ctx, "re-sent version older than the deletion",
		filters(slotFilter(k, addrKind, "x"))); err != nil {
		return "", fmt.Errorf("%w (re-send answered %s)", err, answers[0])
	}
	return "re-send answered " + answers[0].String(), nil
}
