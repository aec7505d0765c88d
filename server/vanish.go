package server

import (
	"strings"

	"github.com/nbd-wtf/go-nostr"
)

// kindVanish is a NIP-62 request to vanish.
const kindVanish = 62

// allRelays is the NIP-62 "relay" tag value addressing every relay.
const allRelays = "ALL_RELAYS"

// vanishNeedsServiceURL refuses a request to vanish that names a specific
// relay when this relay does not know its own name.
const vanishNeedsServiceURL = "blocked: this relay honours a request to vanish that names a relay only when its operator has set its service URL (--service-url); send one addressed to ALL_RELAYS"

// checkVanish is the NIP-62 admission check: a kind 62 must carry a "relay"
// tag naming this relay or ALL_RELAYS; the store then deletes the author's
// events. This relay is its configured service URL (Config.ServiceURL), and
// only that: the Host header a client sends can name any relay, so a
// request the user sent to another relay could be replayed here with that
// relay's name as Host. Without a service URL only ALL_RELAYS is honoured.
// The ws/wss scheme is not compared (a relay behind a TLS-terminating proxy
// may be configured with either). It returns the refusal, or "".
func checkVanish(ev *nostr.Event, serviceURL string) string {
	if ev.Kind != kindVanish {
		return ""
	}
	self := relayAddress(serviceURL)
	namesRelay := false
	for _, tag := range ev.Tags {
		if len(tag) < 2 || tag[0] != "relay" {
			continue
		}
		if tag[1] == allRelays || (self != "" && relayAddress(tag[1]) == self) {
			return ""
		}
		namesRelay = true
	}
	if self == "" && namesRelay {
		return vanishNeedsServiceURL
	}
	return "invalid: request to vanish names another relay"
}

// relayAddress is a relay URL normalized, without its ws:// or wss://
// scheme; "" when it does not parse.
func relayAddress(u string) string {
	n := nostr.NormalizeURL(u)
	if n == "" {
		return ""
	}
	for _, scheme := range []string{"wss://", "ws://"} {
		if rest, ok := strings.CutPrefix(n, scheme); ok {
			return rest
		}
	}
	return n
}
