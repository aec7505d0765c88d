// Package keypackages owns the relay's rules for Marmot KeyPackage events
// (kind 30443, current and addressable, and kind 443, legacy) in Burrow.
// Validator reads the event through marmot.ParseKeyPackageEvent (the one
// parser of KeyPackage events, which decodes the KeyPackage with Burrow's
// own MLS engine) and applies the relay's own rules, the lifetime grace and
// the 84 days + 1 hour cap, which are relay rules and therefore live here
// rather than in mls or marmot. Policy puts them in the EVENT pipeline (as
// a server.Hook's Store): it validates, then stores with
// storage.Store.SaveKeyPackage, giving the store the KeyPackageRef (twins),
// the expiry (not_after plus the grace) and the per-author slot cap, which
// the store applies in the same transaction. Policy also describes itself in
// NIP-11 and serves GET /keypackages/supply (SupplyOf), per-author counts
// that never include content. Handout is the opt-in single-use hand-out
// (RFC 9750's Delivery Service behaviour): one unclaimed KeyPackage per
// author and request, claimed for the requester (Claims) and deleted when
// the claim ends.
//
// What is checked, and what is deliberately not, is written down in
// README.md next to this file. In short, an event passes when:
//   - its content decodes: standard padded base64, or on kind 443 hex when
//     the encoding tag is absent or "hex";
//   - the bytes are exactly one KeyPackage, bare or framed in an MLSMessage
//     of wire format mls_key_package, with protocol version mls10;
//   - the KeyPackage's ciphersuite equals the mls_ciphersuite tag and is one
//     the engine implements;
//   - the KeyPackage and leaf node signatures and the other group-independent
//     checks of RFC 9420 section 10.1 pass;
//   - the BasicCredential identity is the author's pubkey (32 raw bytes, or on
//     kind 443 also its 64 hex characters);
//   - the lifetime is current within the grace, and on current-profile
//     events (those with an app_components tag) no longer than the cap;
//   - the i tag, required on 30443, equals the KeyPackageRef computed over
//     the inner KeyPackage;
//   - a 30443 has exactly one non-empty d tag of at most 256 bytes (any
//     alphabet).
//
// Validate does not check the Nostr event id or signature: the server does
// that before any admission rule runs.
package keypackages
