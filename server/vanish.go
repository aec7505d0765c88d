package server

import (
	"strings"

	"github.com/nbd-wtf/go-nostr"
)

// kindVanish is a NIP-62 request to vanish.
const kindVanish = 62

// allRelays is the NIP-62 "relay" tag value addressing every relay.
const allRelays = "ALL_RELAYS"

// checkVanish is the NIP-62 admission check: a kind 62 must carry a "relay"
// tag naming this relay or ALL_RELAYS; the store then deletes the author's
// events. This relay is its service URL: Config.ServiceURL, or, when that is
// empty, the URL the client connected to (as for NIP-42). The ws/wss scheme
// is not compared, since a relay behind a TLS-terminating proxy without a
// configured service URL sees ws:// where its clients write wss://. It
// returns the refusal, or "".
func checkVanish(ev *nostr.Event, serviceURL string) string {
	if ev.Kind != kindVanish {
		return ""
	}
	self := relayAddress(serviceURL)
	for _, tag := range ev.Tags {
		if len(tag) < 2 || tag[0] != "relay" {
			continue
		}
		if tag[1] == allRelays || (self != "" && relayAddress(tag[1]) == self) {
			return ""
		}
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
