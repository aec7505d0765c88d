package policy

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP returns the address a request comes from: the TCP peer, unless
// the peer is a trusted proxy; then the right-most X-Forwarded-For address
// that is not itself a trusted proxy. Walking from the right matters: every
// address left of the first untrusted hop was written by the client and may
// be forged. An unparsable hop ends the walk at the last trusted one. The
// zero Addr means the peer address could not be read.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		addr, err := netip.ParseAddr(r.RemoteAddr)
		if err != nil {
			return netip.Addr{}
		}
		peer = netip.AddrPortFrom(addr, 0)
	}
	ip := peer.Addr().Unmap()
	if !isTrusted(ip, trusted) {
		return ip
	}
	hops := forwardedHops(r.Header.Values("X-Forwarded-For"))
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(hops[i])
		if err != nil {
			return ip
		}
		hop = hop.Unmap()
		if !isTrusted(hop, trusted) {
			return hop
		}
		ip = hop
	}
	return ip
}

func forwardedHops(values []string) []string {
	var hops []string
	for _, v := range values {
		for _, h := range strings.Split(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hops = append(hops, h)
			}
		}
	}
	return hops
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// GroupAddr is the address per-address limits count ip under: an IPv4
// address is its own group; an IPv6 address is masked to its first v6Bits
// bits, because a single host is usually given a whole /64 and could
// otherwise take a fresh limit per address.
func GroupAddr(ip netip.Addr, v6Bits int) netip.Addr {
	ip = ip.Unmap()
	if !ip.Is6() || v6Bits >= 128 {
		return ip
	}
	p, err := ip.Prefix(v6Bits)
	if err != nil {
		return ip
	}
	return p.Addr()
}

// FromTrustedProxy reports whether r's TCP peer is one of trusted, so the
// forwarding headers it sets (X-Forwarded-*) may be believed.
func FromTrustedProxy(r *http.Request, trusted []netip.Prefix) bool {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	return isTrusted(peer.Addr().Unmap(), trusted)
}
