package conformance

import (
	"context"
	"time"
)

// suite lists every check in run order. Ids are stable: CI and docs/conformance.md refer to them.
func suite() []check {
	createdAt := func(v int64, wire string) func(context.Context, *env) (string, error) {
		return func(ctx context.Context, e *env) (string, error) { return createdAtCase(ctx, e, v, wire) }
	}
	return []check{
		{id: "nip11.document", name: "NIP-11 document is served and well-formed", run: checkNIP11},

		{id: "nip01.ok", name: "Sends OK after EVENT", run: checkOK},
		{id: "nip01.eose", name: "Sends stored events, then EOSE", run: checkEOSE},
		{id: "nip01.live-after-eose", name: "Keeps the subscription open after EOSE", run: checkLiveAfterEOSE},
		{id: "nip01.verify-id", name: "Refuses an event whose id is not its hash (invalid:)", run: checkVerifyID},
		{id: "nip01.verify-sig", name: "Refuses an event with a bad signature (invalid:)", run: checkVerifySig},
		{id: "nip01.json-escapes", name: "NIP-01 JSON escapes in content and tags round-trip exactly", run: checkJSONEscapes},
		{id: "nip01.json-alt-escapes", name: "Accepts other JSON escapes for the same string", run: checkJSONAltEscapes},
		{id: "nip01.created-at-1970", name: "created_at in 1970: served unchanged or refused with a prefix", run: createdAt(1, "")},
		{id: "nip01.created-at-64bit", name: "created_at beyond 32 bits: served unchanged or refused with a prefix", run: createdAt(1<<32+12345, "")},
		{id: "nip01.created-at-negative", name: "Negative created_at: served unchanged or refused with a prefix", run: createdAt(-1000, "")},
		{id: "nip01.created-at-scientific", name: "created_at in scientific notation: answered with OK, never changed", run: createdAt(1700000000, "1.7e9")},
		{id: "nip01.order", name: "Returns events newest first", run: checkOrder},
		{id: "nip01.order-ties", name: "Equal created_at: lowest id first", run: checkOrderTies},
		{id: "nip01.limit", name: "limit returns the newest n", run: checkLimit},
		{id: "nip01.limit-zero", name: "limit 0: no stored events, live events still delivered", run: checkLimitZero},
		{id: "nip01.find-id", name: "Finds by id", run: checkFindByID},
		{id: "nip01.find-pubkey", name: "Finds by pubkey", run: checkFindByPubkey},
		{id: "nip01.find-kind", name: "Finds by pubkey and kind", run: checkFindByKind},
		{id: "nip01.find-tag", name: "Finds by tag", run: checkFindByTag},
		{id: "nip01.find-tags", name: "Finds by several tags (AND across names, OR within one)", run: checkFindByTags},
		{id: "nip01.tag-name-bound", name: "#h does not match a p tag with the same value", run: checkTagNameBound},
		{id: "nip01.since-until", name: "since and until are inclusive", run: checkSinceUntil},
		{id: "nip01.ephemeral-live", name: "Delivers ephemeral events live", run: checkEphemeralLive},
		{id: "nip01.ephemeral-not-stored", name: "Does not store ephemeral events", run: checkEphemeralNotStored},
		{id: "nip01.replaceable-newer", name: "Replaceable (kinds 0, 3, 10002): a newer version replaces", run: replaceNewer([]int{0, 3, 10002}, "")},
		{id: "nip01.replaceable-older", name: "Replaceable: an older version does not replace", run: replaceOlder(0, "")},
		{id: "nip01.replaceable-tie", name: "Replaceable: equal created_at keeps the lower id", run: replaceTie(0, "")},
		{id: "nip01.addressable-newer", name: "Addressable: a newer version replaces", run: replaceNewer([]int{addrKind}, "x")},
		{id: "nip01.addressable-older", name: "Addressable: an older version does not replace", run: replaceOlder(addrKind, "x")},
		{id: "nip01.addressable-tie", name: "Addressable: equal created_at keeps the lower id", run: replaceTie(addrKind, "x")},
		{id: "nip01.addressable-slots", name: "Addressable: different d values are separate slots", run: checkAddressableSlots},

		{id: "nip09.delete-id", name: "Deletes by id; the request stays served", run: checkDeleteByID},
		{id: "nip09.delete-id-others", name: "Cannot delete another key's event by id", run: checkDeleteByIDOfOthers},
		{id: "nip09.delete-address", name: "Deletes by address", run: checkDeleteByAddress},
		{id: "nip09.delete-address-same-second", name: "Deletion by address includes the request's own second", run: checkDeleteByAddressSameSecond},
		{id: "nip09.delete-address-keeps-newer", name: "Deletion by address keeps versions newer than the request", run: checkDeleteByAddressKeepsNewer},
		{id: "nip09.delete-address-then-newer", name: "A version newer than a deletion by address is accepted", run: checkDeleteByAddressThenNewer},
		{id: "nip09.delete-address-bound-by-tag", name: "Deletion by address touches only that d slot", run: checkDeleteByAddressBoundByTag},
		{id: "nip09.delete-address-others", name: "Cannot delete another key's event by address", run: checkDeleteByAddressOfOthers},
		{id: "nip09.resubmit-id", name: "An event deleted by id cannot be re-submitted", run: checkResubmitDeletedByID},
		{id: "nip09.resubmit-address", name: "An older version deleted by address cannot be re-submitted", run: checkResubmitDeletedByAddress},

		{id: "nip11.max-subscriptions", name: "Refuses subscriptions past max_subscriptions with CLOSED", run: checkMaxSubscriptions},
		{id: "nip45.count", name: "COUNT returns the number of matching events", run: checkCount},

		{id: "marmot.group-event-h", name: "Kind 445 with one h tag: found by #h, not by #p", run: checkGroupEventByH},
		{id: "marmot.pipelined-order", name: "200 pipelined events: OKs and live delivery in send order", run: checkPipelinedOrder},
		{id: "marmot.slow-consumer", name: "A subscriber that stops reading does not stall a publisher", run: checkSlowConsumer, budget: 5 * time.Minute},
	}
}
