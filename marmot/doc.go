// Package marmot is Burrow's implementation of the Marmot protocol's Nostr
// mapping of MLS: the current ("adopted") profile of the Marmot
// specification (github.com/marmot-protocol/marmot: foundation/,
// protocol-core/, transports/nostr.md, app-components/), on top of
// Burrow's own MLS engine (package mls). It holds no relay code.
//
// It owns:
//   - KeyPackage events: building current-profile kind 30443 events and
//     reading every published era (kind 443, bare KeyPackages, the encoding
//     and relays tags) through one parser, ParseKeyPackageEvent, which the
//     relay's keypackages package uses too; ValidateKeyPackageEvent adds
//     the current profile's rules for a client choosing a KeyPackage;
//   - app components: the components list, group profile (0x8001), admin
//     policy (0x8003), Nostr routing (0x8004) and the account identity
//     proof (0x8009), encoded and decoded exactly, and the older 0xF2EE
//     group-data extension read-only;
//   - the account identity proof, built for every leaf this client makes
//     and checked for every leaf it receives through the engine's
//     credential validator (identity immutable across updates);
//   - kind 445 group events: the exporter-keyed ChaCha20-Poly1305 content,
//     a fresh signing key per event, the h and expiration tags, the older
//     NIP-44 form read-only, and the message id used for deduplication;
//   - app payloads: the unsigned inner Nostr event (kind 9 chat) and its
//     strict decoder;
//   - Welcomes: the kind 444 rumor, sealed (kind 13) and gift-wrapped
//     (kind 1059) with go-nostr's nip44 and nip59, and the joiner's checks;
//   - Group: a member's Marmot group (admin-only changes, SelfRemove,
//     convergence policy v1 for competing commits, publish before apply);
//   - Client: a relay client for any NIP-01 relay (OK, subscriptions,
//     NIP-42 AUTH, NIP-11, kind 10002 and 10050 discovery), using Burrow's
//     since_seq and commit-slot extensions only where NIP-11 advertises them.
//
// docs/marmot.md says which version of each specification document this
// follows and what it does not implement.
package marmot
