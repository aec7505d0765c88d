package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/burrow-relay/burrow/policy"
	"github.com/nbd-wtf/go-nostr"
)

// handleMessage dispatches one client message. Bad input is answered with the
// most specific message possible (OK for an EVENT whose id is readable,
// CLOSED for a REQ or COUNT whose subscription id is readable, NOTICE
// otherwise) and never ends the connection.
//
// Every message is first charged to the connection's and the address's
// token buckets (policy.Meter), before any work is spent on it.
func (c *conn) handleMessage(msg []byte, oversize bool) {
	label := peekLabel(msg)
	if reason := c.meter.Charge(c.srv.hardCtx, label == "EVENT"); reason != "" {
		c.srv.metrics.rateLimited.WithLabelValues(typeLabel(label)).Inc()
		if label == "CLOSE" && !oversize {
			// Closing only frees resources: done even over the limit.
			if m, ok := parseClientMessage(msg); ok {
				c.closeSub(m.args)
			}
		}
		c.refuse(label, peekID(msg, label), reason)
		return
	}
	if oversize {
		c.refuse(label, peekID(msg, label), fmt.Sprintf("invalid: message too large (max %d bytes)", c.srv.limits.MaxMessageLength))
		return
	}
	if !utf8.Valid(msg) {
		// What is stored must be what was signed: JSON decoding would turn
		// these bytes into U+FFFD, so the served event would not verify.
		c.refuse(label, peekID(msg, label), "invalid: message is not valid UTF-8")
		return
	}
	m, ok := parseClientMessage(msg)
	if !ok {
		c.notice("invalid: message is not a JSON array starting with a string")
		return
	}
	switch m.label {
	case "EVENT":
		c.handleEvent(m.args)
	case "REQ":
		c.handleReq(m.args)
	case "COUNT":
		c.handleCount(m.args)
	case "CLOSE":
		c.handleClose(m.args)
	case "AUTH":
		c.handleAuth(m.args)
	case "NEG-OPEN", "NEG-MSG", "NEG-CLOSE":
		if !c.srv.cfg.Negentropy {
			c.notice("invalid: NIP-77 (negentropy) is not enabled on this relay")
			return
		}
		switch m.label {
		case "NEG-OPEN":
			c.handleNegOpen(m.args)
		case "NEG-MSG":
			c.handleNegMsg(m.args)
		default:
			c.handleNegClose(m.args)
		}
	default:
		c.notice(fmt.Sprintf("invalid: unknown message type %q", truncate(m.label, 32)))
	}
}

// refuse answers a message refused before it was parsed, with the most
// specific message its label and id (see peekLabel, peekID) allow.
func (c *conn) refuse(label, id, reason string) {
	switch {
	case (label == "EVENT" || label == "AUTH") && policy.IsLowerHex(id, 64):
		if label == "EVENT" {
			c.srv.metrics.rejected(-1, reason)
		}
		c.send(c.srv.hardCtx, encodeOK(id, false, reason))
	case (label == "REQ" || label == "COUNT") && id != "" && len(id) <= c.srv.limits.MaxSubIDLength:
		c.send(c.srv.hardCtx, encodeClosed(id, reason))
	case (label == "NEG-OPEN" || label == "NEG-MSG") && c.srv.cfg.Negentropy && id != "" && len(id) <= c.srv.limits.MaxSubIDLength:
		// The session cannot go on without the message it refused.
		c.closeNeg(id)
		c.negErr(id, reason)
	default:
		c.notice(reason)
	}
}

// parseEvent decodes and shape-checks an event object. It returns the event,
// or the id when one is readable (for an OK) and the refusal.
func parseEvent(raw json.RawMessage) (ev *nostr.Event, id string, reason string) {
	ev = &nostr.Event{}
	if err := ev.UnmarshalJSON(raw); err != nil {
		var probe struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(raw, &probe)
		return nil, probe.ID, "invalid: event is not valid JSON"
	}
	switch {
	case !policy.IsLowerHex(ev.ID, 64):
		return nil, "", "invalid: event id must be 64 lowercase hex characters"
	case !policy.IsLowerHex(ev.PubKey, 64):
		return nil, ev.ID, "invalid: pubkey must be 64 lowercase hex characters"
	case !policy.IsLowerHex(ev.Sig, 128):
		return nil, ev.ID, "invalid: sig must be 128 lowercase hex characters"
	case ev.Kind < 0 || ev.Kind > 65535:
		return nil, ev.ID, "invalid: kind must be between 0 and 65535"
	case ev.CreatedAt < 0:
		return nil, ev.ID, "invalid: created_at must not be negative"
	}
	for _, tag := range ev.Tags {
		if len(tag) == 0 {
			return nil, ev.ID, "invalid: empty tag"
		}
	}
	return ev, ev.ID, ""
}

func (c *conn) handleEvent(args []json.RawMessage) {
	if len(args) != 1 {
		c.notice("invalid: EVENT takes exactly one event")
		return
	}
	ev, id, reason := parseEvent(args[0])
	if reason != "" {
		c.srv.metrics.rejected(-1, reason)
		if policy.IsLowerHex(id, 64) {
			c.send(c.srv.hardCtx, encodeOK(id, false, reason))
		} else {
			c.notice(reason)
		}
		return
	}
	c.enqueueEvent(ev, len(args[0]))
}

func (c *conn) handleClose(args []json.RawMessage) {
	if !c.closeSub(args) {
		c.notice("invalid: CLOSE takes exactly one subscription id")
	}
}

// closeSub ends the subscription a CLOSE names (if open); false when the
// arguments are not one subscription id.
func (c *conn) closeSub(args []json.RawMessage) bool {
	var subID string
	if len(args) != 1 || json.Unmarshal(args[0], &subID) != nil {
		return false
	}
	if sub, ok := c.subs[subID]; ok {
		c.dropSub(sub)
	}
	return true
}

func (c *conn) handleAuth(args []json.RawMessage) {
	if len(args) != 1 {
		c.notice("invalid: AUTH takes exactly one event")
		return
	}
	ev, id, reason := parseEvent(args[0])
	if reason == "" {
		reason = c.checkAuthEvent(ev)
	}
	if reason != "" {
		if policy.IsLowerHex(id, 64) {
			c.send(c.srv.hardCtx, encodeOK(id, false, reason))
		} else {
			c.notice(reason)
		}
		return
	}
	c.setAuthed(ev.PubKey)
	c.send(c.srv.hardCtx, encodeOK(ev.ID, true, ""))
}

// checkAuthEvent validates a NIP-42 AUTH event against this connection.
func (c *conn) checkAuthEvent(ev *nostr.Event) string {
	if ev.Kind != nostr.KindClientAuthentication {
		return "invalid: AUTH event must be kind 22242"
	}
	if tag := ev.Tags.Find("challenge"); tag == nil || tag[1] != c.challenge {
		return "invalid: AUTH challenge does not match"
	}
	tag := ev.Tags.Find("relay")
	if tag == nil || nostr.NormalizeURL(tag[1]) == "" ||
		nostr.NormalizeURL(tag[1]) != nostr.NormalizeURL(c.serviceURL) {
		return "invalid: AUTH relay URL does not name this relay"
	}
	created := time.Unix(int64(ev.CreatedAt), 0)
	if d := time.Since(created); d > authWindow || d < -authWindow {
		return "invalid: AUTH created_at is too far from now"
	}
	if !ev.CheckID() {
		return "invalid: event id does not match its content"
	}
	if ok, _ := ev.CheckSignature(); !ok {
		return "invalid: bad signature"
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
