package server

import (
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/burrow-relay/burrow/policy"
	"github.com/nbd-wtf/go-nostr"
)

// Ingest runs ev through the EVENT pipeline a websocket publish goes
// through, without a connection, and returns the OK the publisher would
// have been sent: ok and its message ("seq:<n>" for a stored kind 445,
// "duplicate: ..." for an event already held, "blocked: deleted" for a
// tombstoned id, and so on, word for word as over a websocket). It is
// the entry point of an operator's own tools (relay sync), which must
// store nothing a client could not have published here.
//
// What it applies, in the websocket path's order: the size of the EVENT
// message against Limits.MaxMessageLength, UTF-8 and the event's shape as
// the message decoder checks them; the id and signature; the admission
// rules (event shape and created_at bounds, the allowed kinds, kind 445's
// shape and Config.GroupRetention, NIP-70 protected events, then
// Config.Rules); NIP-62's relay check; the kind's SaveHook (KeyPackage
// validation, the slot cap and twins; commit slots) or Store.Save, with the
// store's rules (tombstones of deleted, banned and vanished events and
// authors, replaceable versions, expiry, deletion requests and requests to
// vanish deleting what they name, the group sequence); what deletions do
// next (the deleted set that stops copies on their way to subscribers,
// metrics, Config.PublishDeletions to other instances); the broadcast to
// live subscribers through Config.BroadcastVia (ordered fan-out, other
// instances); and the metrics of accepted and refused events.
//
// What it does not apply: the rate limits that protect the relay from
// hostile clients, which are not rules about an event: the per-address and
// per-connection event buckets (policy.Meter, charged when a message
// arrives on a connection) and the per-group flood limit (policy.GroupFlood,
// which would refuse most of a group's history pulled at once). No pubkey is
// authenticated (NIP-42), so a protected event (NIP-70) is refused with
// "auth-required:" as it would be from an unauthenticated client.
//
// Ingest is safe for concurrent use; one caller's events are stored in the
// order of its calls. Callers stop calling before Shutdown; after it, every
// event is answered "error:". ev is not kept: the pipeline works on a copy.
func (s *Server) Ingest(ctx context.Context, ev *nostr.Event) (ok bool, msg string) {
	if s.stopping.Load() {
		return false, "error: the relay is shutting down"
	}
	if !validUTF8(ev) {
		s.metrics.rejected(-1, "invalid: message is not valid UTF-8")
		return false, "invalid: message is not valid UTF-8"
	}
	raw, err := ev.MarshalJSON()
	if err != nil {
		s.metrics.rejected(-1, "invalid: event is not valid JSON")
		return false, "invalid: event is not valid JSON"
	}
	// The EVENT message a client would have sent: ["EVENT",<event>].
	if n := len(raw) + len(`["EVENT",]`); n > s.limits.MaxMessageLength {
		reason := fmt.Sprintf("invalid: message too large (max %d bytes)", s.limits.MaxMessageLength)
		s.metrics.rejected(-1, reason)
		return false, reason
	}
	cp, _, reason := parseEvent(raw)
	if reason != "" {
		s.metrics.rejected(-1, reason)
		return false, reason
	}
	reason = verifyEvent(cp)
	s.runEvent(policy.WithConn(ctx, policy.Conn{}), cp, reason, s.ingestRules, func(o bool, m string) { ok, msg = o, m })
	return ok, msg
}

// validUTF8 reports whether every string of ev is valid UTF-8, as every
// message read from a websocket must be.
func validUTF8(ev *nostr.Event) bool {
	if !utf8.ValidString(ev.Content) {
		return false
	}
	for _, tag := range ev.Tags {
		for _, v := range tag {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}
