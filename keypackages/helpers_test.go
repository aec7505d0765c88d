package keypackages_test

import (
	"encoding/base64"
	"encoding/hex"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/interop"
	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
)

// clock is the fixed time of every test: a few minutes after the interop
// fixtures were made, inside all of their lifetimes (mls-go's default one
// expires 83 days later, so the real clock cannot be used).
var clock = time.Date(2026, 11, 28, 8, 5, 0, 0, time.UTC)

// source is one KeyPackage and the Nostr key that publishes it.
type source struct {
	name      string
	bare      []byte // the KeyPackage
	framed    []byte // an MLSMessage framing it
	secretKey string // Nostr secret key, hex
	pubkey    string // Nostr pubkey, hex
	ref       string // KeyPackageRef as its maker computed it, hex
	notBefore uint64
	notAfter  uint64
	// lastResort is whether the KeyPackage is marked last resort.
	lastResort bool
}

// overCap reports whether the lifetime exceeds the default cap.
func (s source) overCap() bool {
	return s.notAfter-s.notBefore > uint64((84*24*time.Hour+time.Hour)/time.Second)
}

func fixtureSources(t testing.TB) []source {
	t.Helper()
	fs, err := interop.LoadKeyPackageFixtures(interop.FixturesDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) < 4 {
		t.Fatalf("%d fixtures, want the four of interop/fixtures", len(fs))
	}
	out := make([]source, 0, len(fs))
	for _, f := range fs {
		out = append(out, source{
			name:      f.Name,
			bare:      f.KeyPackageBare,
			framed:    f.KeyPackage,
			secretKey: hex.EncodeToString(f.NostrSecretKey),
			pubkey:    hex.EncodeToString(f.NostrPubkey),
			ref:       hex.EncodeToString(f.KeyPackageRef),
			notBefore: f.NotBefore,
			notAfter:  f.NotAfter,
		})
	}
	return out
}

// ownOptions shape a KeyPackage made by our own engine.
type ownOptions struct {
	lifetime mls.Lifetime
	// identity replaces the credential identity (default: the raw pubkey).
	identity func(pub []byte) []byte
	// extensions are the KeyPackage extensions (default: last_resort).
	extensions mls.Extensions
	suite      cipher.CipherSuite
	// mutate changes the KeyPackage before it is signed again.
	mutate func(kp *mls.KeyPackage)
}

// ownSource makes a KeyPackage with mls.NewKeyPackage for a fresh Nostr
// identity, marked last resort as Marmot clients do.
func ownSource(t testing.TB, name string, o ownOptions) source {
	t.Helper()
	sk := nostr.GeneratePrivateKey()
	pub, err := nostr.GetPublicKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	pubRaw, err := hex.DecodeString(pub)
	if err != nil {
		t.Fatal(err)
	}
	if o.suite == 0 {
		o.suite = cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519
	}
	if o.lifetime == (mls.Lifetime{}) {
		o.lifetime = mls.Lifetime{NotBefore: uint64(clock.Add(-time.Hour).Unix()), NotAfter: uint64(clock.Add(83 * 24 * time.Hour).Unix())}
	}
	if o.extensions == nil {
		o.extensions = mls.Extensions{{Type: mls.ExtLastResort}}
	}
	identity := pubRaw
	if o.identity != nil {
		identity = o.identity(pubRaw)
	}
	suite, err := cipher.New(o.suite)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := suite.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	kp, _, err := mls.NewKeyPackage(suite, signer, mls.KeyPackageParams{
		Credential: mls.Credential{Type: mls.CredentialBasic, Identity: identity},
		Capabilities: mls.Capabilities{
			Versions:     []mls.ProtocolVersion{mls.MLS10},
			CipherSuites: []mls.CipherSuite{mls.CipherSuite(o.suite)},
			Extensions:   []mls.ExtensionType{mls.ExtLastResort, mls.ExtAppDataDictionary, 0xf2ee},
			Proposals:    []mls.ProposalType{mls.ProposalSelfRemove},
			Credentials:  []mls.CredentialType{mls.CredentialBasic},
		},
		Lifetime:   o.lifetime,
		Extensions: o.extensions,
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.mutate != nil {
		o.mutate(kp)
		if err := kp.Sign(suite, signer); err != nil {
			t.Fatal(err)
		}
	}
	bare, err := mls.Marshal(kp)
	if err != nil {
		t.Fatal(err)
	}
	framed, err := mls.Marshal(&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := suite.KeyPackageRef(bare)
	if err != nil {
		t.Fatal(err)
	}
	return source{
		name: name, bare: bare, framed: framed, secretKey: sk, pubkey: pub,
		ref: hex.EncodeToString(ref), notBefore: kp.LeafNode.Lifetime.NotBefore, notAfter: kp.LeafNode.Lifetime.NotAfter,
		lastResort: true,
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// slot is a valid d value.
const slot = "5f1c0a9e3b7d2c4f6a8e0b1d3c5f7a9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a"

// signed builds and signs an event from the source's Nostr key.
func signed(t testing.TB, s source, kind int, content string, tags nostr.Tags) *nostr.Event {
	t.Helper()
	ev := &nostr.Event{Kind: kind, CreatedAt: nostr.Timestamp(clock.Unix()), Tags: tags, Content: content}
	if err := ev.Sign(s.secretKey); err != nil {
		t.Fatal(err)
	}
	return ev
}

// Tag sets of each client era.

// eraNIPEE is NIP-EE's kind 443: hex content, no encoding tag, the
// ciphersuite tag under its old name.
func eraNIPEE(s source) nostr.Tags {
	return nostr.Tags{
		{"mls_protocol_version", "1.0"},
		{"ciphersuite", "0x0001"},
		{"extensions", "0x0001", "0x0002", "0x0003", "0x000a"},
		{"client", "nostr-openmls", "31990:abc:def", "wss://relay.example"},
		{"relays", "wss://relay.example", "wss://other.example"},
	}
}

// eraMIP443 is MIP-00's kind 443 with base64 content.
func eraMIP443(s source) nostr.Tags {
	return nostr.Tags{
		{"mls_protocol_version", "1.0"},
		{"mls_ciphersuite", "0x0001"},
		{"mls_extensions", "0xf2ee", "0x000a"},
		{"relays", "wss://relay.example"},
		{"client", "MDK/0.6.0"},
		{"encoding", "base64"},
	}
}

// eraMDK08 is MDK 0.8's kind 30443 (bare KeyPackage, base64).
func eraMDK08(s source) nostr.Tags {
	return nostr.Tags{
		{"d", slot},
		{"mls_protocol_version", "1.0"},
		{"mls_ciphersuite", "0x0001"},
		{"mls_extensions", "0x000a", "0xf2ee"},
		{"mls_proposals", "0x000a"},
		{"relays", "wss://relay.example", "wss://other.example"},
		{"i", s.ref},
		{"client", "MDK/0.8.0"},
		{"encoding", "base64"},
	}
}

// eraMarmotTS is marmot-ts 0.5's kind 30443: the application's client id
// as d, verbatim (its own tests use "test-invitee-device"), no
// mls_proposals.
func eraMarmotTS(s source) nostr.Tags {
	return nostr.Tags{
		{"d", "test-invitee-device"},
		{"mls_protocol_version", "1.0"},
		{"mls_ciphersuite", "0x0001"},
		{"mls_extensions", "0xf2ee", "0x000a"},
		{"encoding", "base64"},
		{"i", s.ref},
		{"client", "marmot-ts"},
		{"relays", "wss://relay.example"},
	}
}

// eraAdopted is the adopted spec's kind 30443: every Marmot tag, no
// encoding or relays, app_components present (so the cap applies).
func eraAdopted(s source) nostr.Tags {
	return nostr.Tags{
		{"d", slot},
		{"mls_protocol_version", "1.0"},
		{"i", s.ref},
		{"mls_ciphersuite", "0x0001"},
		{"mls_extensions", "0x0006", "0xf2f1", "0x000a"},
		{"mls_proposals", "0x0008", "0x000a"},
		{"app_components", "0x8001", "0x8003", "0x8004", "0x8009"},
	}
}

// eraMinimal is a 30443 with only d, i and mls_ciphersuite.
func eraMinimal(s source) nostr.Tags {
	return nostr.Tags{{"d", slot}, {"i", s.ref}, {"mls_ciphersuite", "0x0001"}}
}

// eraMix mixes markers of every era on a 30443, app_components included.
func eraMix(s source) nostr.Tags {
	return nostr.Tags{
		{"d", slot},
		{"i", s.ref},
		{"mls_ciphersuite", "0x0001"},
		{"mls_protocol_version", "1.0"},
		{"encoding", "base64"},
		{"relays", "wss://relay.example"},
		{"client", "MDK/0.8.0"},
		{"mls_extensions", "0xf2ee"},
		{"app_components", "0x8009"},
		{"-"},
	}
}

// eraMix443 is a legacy 443 carrying current-profile tags, so the cap
// applies to it too.
func eraMix443(s source) nostr.Tags {
	return nostr.Tags{
		{"mls_ciphersuite", "0x0001"},
		{"encoding", "base64"},
		{"i", s.ref},
		{"mls_proposals", "0x000a"},
		{"app_components", "0x8001"},
	}
}

// with returns tags with every tag named name replaced by repl (dropped
// when repl is empty).
func with(tags nostr.Tags, name string, repl ...nostr.Tag) nostr.Tags {
	var out nostr.Tags
	done := false
	for _, tg := range tags {
		if len(tg) > 0 && tg[0] == name {
			if !done {
				out = append(out, repl...)
				done = true
			}
			continue
		}
		out = append(out, tg)
	}
	if !done {
		out = append(out, repl...)
	}
	return out
}
