package keypackages_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/keypackages"
	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/codec"
	"github.com/burrow-relay/burrow/policy"
)

func at(t time.Time) keypackages.Validator {
	return keypackages.Validator{Now: func() time.Time { return t }}
}

// era is one client generation's way of publishing a KeyPackage.
type era struct {
	name    string
	kind    int
	tags    func(source) nostr.Tags
	hex     bool // content is hex (NIP-EE)
	current bool // carries app_components, so the cap applies
}

var eras = []era{
	{"NIP-EE 443 hex, no encoding tag", 443, eraNIPEE, true, false},
	{"MIP-00 443 base64", 443, eraMIP443, false, false},
	{"MDK 0.8 30443", 30443, eraMDK08, false, false},
	{"marmot-ts 30443", 30443, eraMarmotTS, false, false},
	{"adopted spec 30443", 30443, eraAdopted, false, true},
	{"30443 with only d, i, mls_ciphersuite", 30443, eraMinimal, false, false},
	{"30443 mixing every era", 30443, eraMix, false, true},
	{"443 with current-profile tags", 443, eraMix443, false, true},
}

// TestValidateEras runs every KeyPackage (ts-mls, mls-go, ours) through
// every era's tag set, bare and MLSMessage-framed. All pass, except that a
// lifetime longer than the cap fails on current-profile events.
func TestValidateEras(t *testing.T) {
	sources := append(fixtureSources(t), ownSource(t, "burrow-mls", ownOptions{}))
	v := at(clock)
	for _, s := range sources {
		for _, e := range eras {
			for _, framed := range []bool{false, true} {
				name := s.name + "/" + e.name + "/bare"
				raw := s.bare
				if framed {
					name, raw = s.name+"/"+e.name+"/framed", s.framed
				}
				t.Run(name, func(t *testing.T) {
					content := b64(raw)
					if e.hex {
						content = hex.EncodeToString(raw)
					}
					ev := signed(t, s, e.kind, content, e.tags(s))
					info, err := v.Validate(ev)
					if e.current && s.overCap() {
						if !errors.Is(err, keypackages.ErrLifetime) {
							t.Fatalf("lifetime %d s with app_components: err = %v, want ErrLifetime", s.notAfter-s.notBefore, err)
						}
						return
					}
					if err != nil {
						t.Fatalf("Validate: %v", err)
					}
					want := keypackages.Info{
						Kind: e.kind, Ref: s.ref, CipherSuite: cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519,
						NotBefore: s.notBefore, NotAfter: s.notAfter, LastResort: s.lastResort,
						CurrentProfile: e.current, Framed: framed,
					}
					if e.kind == 30443 {
						want.Slot = e.tags(s).GetD()
					}
					got := info
					got.KeyPackage = nil
					if got != want {
						t.Fatalf("Info = %+v\nwant   %+v", got, want)
					}
					if b, err := info.KeyPackage.Bytes(); err != nil || !bytes.Equal(b, s.bare) {
						t.Fatalf("Info.KeyPackage is not the inner KeyPackage (%v)", err)
					}
				})
			}
		}
	}
}

func sourceNamed(t *testing.T, all []source, name string) source {
	t.Helper()
	for _, s := range all {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("no fixture %s", name)
	return source{}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func set(b []byte, i int, v byte) []byte {
	c := bytes.Clone(b)
	c[i] = v
	return c
}

// leafSignatureAt returns the offset of the leaf node signature in a bare
// KeyPackage.
func leafSignatureAt(t *testing.T, bare []byte) int {
	t.Helper()
	kp, err := mls.DecodeKeyPackage(bare)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(bare, kp.LeafNode.Signature)
	if i < 0 || len(kp.LeafNode.Signature) == 0 {
		t.Fatal("leaf node signature not found")
	}
	return i
}

func TestValidateFailures(t *testing.T) {
	fixtures := fixtureSources(t)
	mlsgo := sourceNamed(t, fixtures, "mlsgo-default")
	tsmls := sourceNamed(t, fixtures, "tsmls-10y")
	tsmlsDefault := sourceNamed(t, fixtures, "tsmls-default")
	other := ownSource(t, "other", ownOptions{})

	// unpadded is a base64 form without padding: pick the framing whose
	// length is not a multiple of 3 (bare and framed differ by 4 bytes).
	padded := mlsgo.bare
	if len(padded)%3 == 0 {
		padded = mlsgo.framed
	}
	welcome, err := mls.Marshal(&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatWelcome,
		Welcome: &mls.Welcome{CipherSuite: 1, EncryptedGroupInfo: bytes.Repeat([]byte{7}, 40)}})
	if err != nil {
		t.Fatal(err)
	}
	hexIdentity := ownSource(t, "hex identity", ownOptions{identity: func(pub []byte) []byte { return []byte(hex.EncodeToString(pub)) }})
	sameKeys := ownSource(t, "init key = encryption key", ownOptions{mutate: func(kp *mls.KeyPackage) { kp.InitKey = kp.LeafNode.EncryptionKey }})
	notBasic := ownSource(t, "x509 credential", ownOptions{mutate: func(kp *mls.KeyPackage) {
		kp.LeafNode.Credential = mls.Credential{Type: mls.CredentialX509, Certificates: [][]byte{{1, 2, 3}}}
	}})
	inverted := ownSource(t, "inverted lifetime", ownOptions{lifetime: mls.Lifetime{
		NotBefore: uint64(clock.Add(time.Hour).Unix()), NotAfter: uint64(clock.Add(-time.Hour).Unix())}})
	capSpan := uint64(keypackages.DefaultMaxLifetime / time.Second)
	atCap := ownSource(t, "at the cap", ownOptions{lifetime: mls.Lifetime{
		NotBefore: uint64(clock.Unix()) - 100, NotAfter: uint64(clock.Unix()) - 100 + capSpan}})
	overCap := ownSource(t, "one second over the cap", ownOptions{lifetime: mls.Lifetime{
		NotBefore: uint64(clock.Unix()) - 100, NotAfter: uint64(clock.Unix()) - 100 + capSpan + 1}})
	dict, err := mls.NewExtension(mls.ExtAppDataDictionary, &mls.AppDataDictionary{Components: []mls.ComponentData{{ComponentID: 0x0004}}})
	if err != nil {
		t.Fatal(err)
	}
	componentLastResort := ownSource(t, "last resort component", ownOptions{extensions: mls.Extensions{dict}})
	notLastResort := ownSource(t, "not last resort", ownOptions{extensions: mls.Extensions{}})
	notLastResort.lastResort = false

	leafSig := leafSignatureAt(t, mlsgo.bare)
	tsLeafSig := leafSignatureAt(t, tsmls.bare)
	framedRef, err := func() (string, error) {
		s, err := cipher.New(1)
		if err != nil {
			return "", err
		}
		r, err := s.KeyPackageRef(mlsgo.framed)
		return hex.EncodeToString(r), err
	}()
	if err != nil {
		t.Fatal(err)
	}

	nb := time.Unix(int64(mlsgo.notBefore), 0)
	na := time.Unix(int64(mlsgo.notAfter), 0)

	cases := []struct {
		name string
		ev   *nostr.Event
		v    keypackages.Validator // zero: at(clock)
		want error                 // nil: passes
		// reason must appear in the OK message.
		reason string
		// cause, when set, must also match through errors.Is.
		cause error
		check func(t *testing.T, info keypackages.Info)
	}{
		// encoding
		{name: "bad base64", ev: signed(t, mlsgo, 30443, "not base64!!", eraAdopted(mlsgo)),
			want: keypackages.ErrEncoding, reason: "not standard padded base64"},
		{name: "unpadded base64", ev: signed(t, mlsgo, 30443, base64.RawStdEncoding.EncodeToString(padded), eraMinimal(mlsgo)),
			want: keypackages.ErrEncoding, reason: "not standard padded base64"},
		{name: "url-safe base64", ev: signed(t, mlsgo, 30443, strings.NewReplacer("+", "-", "/", "_").Replace(b64(mlsgo.bare)+"+/"), eraMinimal(mlsgo)),
			want: keypackages.ErrEncoding, reason: "not standard padded base64"},
		{name: "base64 with a line break", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare)[:40]+"\n"+b64(mlsgo.bare)[40:], eraMinimal(mlsgo)),
			want: keypackages.ErrEncoding, reason: "line breaks"},
		{name: "bad hex on legacy 443", ev: signed(t, tsmls, 443, b64(tsmls.bare), eraNIPEE(tsmls)),
			want: keypackages.ErrEncoding, reason: "not hex"},
		{name: "odd-length hex on 443 with encoding hex", ev: signed(t, tsmls, 443, hex.EncodeToString(tsmls.bare)+"0", with(eraNIPEE(tsmls), "encoding", nostr.Tag{"encoding", "hex"})),
			want: keypackages.ErrEncoding, reason: "not hex"},
		{name: "hex on 30443", ev: signed(t, mlsgo, 30443, hex.EncodeToString(mlsgo.bare), with(eraMDK08(mlsgo), "encoding", nostr.Tag{"encoding", "hex"})),
			want: keypackages.ErrEncoding, reason: "kind 30443 content must be base64"},
		{name: "unknown encoding on 443", ev: signed(t, tsmls, 443, b64(tsmls.bare), with(eraMIP443(tsmls), "encoding", nostr.Tag{"encoding", "base58"})),
			want: keypackages.ErrEncoding, reason: `unknown encoding "base58"`},
		{name: "two encoding tags", ev: signed(t, tsmls, 443, b64(tsmls.bare), append(eraMIP443(tsmls), nostr.Tag{"encoding", "base64"})),
			want: keypackages.ErrEncoding, reason: "2 encoding tags"},
		{name: "non-zero padding bits", ev: signed(t, mlsgo, 30443, "AAEABR==", eraMinimal(mlsgo)),
			want: keypackages.ErrEncoding, reason: "not standard padded base64"},
		{name: "empty content", ev: signed(t, mlsgo, 30443, "", eraMinimal(mlsgo)),
			want: keypackages.ErrEncoding, reason: "empty content"},
		{name: "uppercase hex on legacy 443 passes", ev: signed(t, tsmls, 443, strings.ToUpper(hex.EncodeToString(tsmls.bare)), eraNIPEE(tsmls))},

		// framing
		{name: "trailing byte after a bare KeyPackage", ev: signed(t, mlsgo, 30443, b64(append(bytes.Clone(mlsgo.bare), 0)), eraMinimal(mlsgo)),
			want: keypackages.ErrFraming, reason: "trailing bytes after the KeyPackage (1)", cause: codec.ErrTrailingBytes},
		{name: "trailing bytes after a framed KeyPackage", ev: signed(t, tsmls, 443, hex.EncodeToString(append(bytes.Clone(tsmls.framed), 1, 2, 3)), eraNIPEE(tsmls)),
			want: keypackages.ErrFraming, reason: "trailing bytes after the KeyPackage (3)", cause: codec.ErrTrailingBytes},
		{name: "truncated KeyPackage", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare[:len(mlsgo.bare)-1]), eraMinimal(mlsgo)),
			want: keypackages.ErrFraming, reason: "not a KeyPackage", cause: codec.ErrTruncated},
		{name: "three bytes", ev: signed(t, mlsgo, 30443, b64([]byte{0, 1, 0}), eraMinimal(mlsgo)),
			want: keypackages.ErrFraming, reason: "too short"},
		{name: "MLSMessage framing a Welcome", ev: signed(t, mlsgo, 30443, b64(welcome), eraAdopted(mlsgo)),
			want: keypackages.ErrFraming, reason: "wire format 3, want mls_key_package"},
		{name: "unknown wire format", ev: signed(t, mlsgo, 30443, b64(set(mlsgo.framed, 3, 9)), eraAdopted(mlsgo)),
			want: keypackages.ErrFraming, reason: "not a KeyPackage"},
		{name: "framed KeyPackage truncated", ev: signed(t, mlsgo, 30443, b64(mlsgo.framed[:len(mlsgo.framed)-2]), eraAdopted(mlsgo)),
			want: keypackages.ErrFraming, reason: "MLSMessage of wire format mls_key_package that does not decode"},

		// version
		{name: "bare KeyPackage version 2", ev: signed(t, mlsgo, 30443, b64(set(mlsgo.bare, 1, 2)), eraMinimal(mlsgo)),
			want: keypackages.ErrVersion, reason: "KeyPackage protocol version is 2"},
		{name: "MLSMessage version 2", ev: signed(t, mlsgo, 30443, b64(set(mlsgo.framed, 1, 2)), eraAdopted(mlsgo)),
			want: keypackages.ErrVersion, reason: "MLSMessage protocol version is 2"},
		{name: "framed KeyPackage version 0", ev: signed(t, mlsgo, 30443, b64(set(mlsgo.framed, 5, 0)), eraAdopted(mlsgo)),
			want: keypackages.ErrVersion, reason: "KeyPackage protocol version is 0"},

		// ciphersuite
		{name: "mls_ciphersuite tag differs", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "mls_ciphersuite", nostr.Tag{"mls_ciphersuite", "0x0002"})),
			want: keypackages.ErrCipherSuiteMismatch, reason: "ciphersuite is 0x0001 but the mls_ciphersuite tag says 0x0002"},
		{name: "NIP-EE ciphersuite tag differs", ev: signed(t, tsmls, 443, hex.EncodeToString(tsmls.bare), with(eraNIPEE(tsmls), "ciphersuite", nostr.Tag{"ciphersuite", "0x0003"})),
			want: keypackages.ErrCipherSuiteMismatch, reason: "but the ciphersuite tag says 0x0003"},
		{name: "two mls_ciphersuite tags", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), append(eraMDK08(mlsgo), nostr.Tag{"mls_ciphersuite", "0x0001"})),
			want: keypackages.ErrCipherSuite, reason: "2 mls_ciphersuite tags"},
		{name: "missing mls_ciphersuite", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "mls_ciphersuite")),
			want: keypackages.ErrCipherSuite, reason: "missing mls_ciphersuite tag"},
		{name: "NIP-EE tag name on 30443 does not count", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "mls_ciphersuite", nostr.Tag{"ciphersuite", "0x0001"})),
			want: keypackages.ErrCipherSuite, reason: "missing mls_ciphersuite tag"},
		{name: "malformed mls_ciphersuite", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "mls_ciphersuite", nostr.Tag{"mls_ciphersuite", "one"})),
			want: keypackages.ErrCipherSuite, reason: `"one" is not a ciphersuite number`},
		{name: "decimal mls_ciphersuite passes", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "mls_ciphersuite", nostr.Tag{"mls_ciphersuite", "1"}))},
		{name: "unsupported ciphersuite", ev: signed(t, mlsgo, 30443, b64(set(mlsgo.bare, 3, 4)), with(eraMDK08(mlsgo), "mls_ciphersuite", nostr.Tag{"mls_ciphersuite", "0x0004"})),
			want: keypackages.ErrCipherSuite, reason: "ciphersuite 0x0004 is not supported", cause: cipher.ErrUnsupportedCipherSuite},

		// signatures
		{name: "flipped bit in the KeyPackage signature (mls-go, bare)", ev: signed(t, mlsgo, 30443, b64(flip(mlsgo.bare, len(mlsgo.bare)-1)), eraMDK08(mlsgo)),
			want: keypackages.ErrSignature, reason: "KeyPackage signature does not verify", cause: cipher.ErrInvalidSignature},
		{name: "flipped bit in the KeyPackage signature (ts-mls, framed)", ev: signed(t, tsmls, 443, hex.EncodeToString(flip(tsmls.framed, len(tsmls.framed)-20)), eraNIPEE(tsmls)),
			want: keypackages.ErrSignature, reason: "KeyPackage signature does not verify", cause: cipher.ErrInvalidSignature},
		{name: "flipped bit in the leaf node signature (mls-go)", ev: signed(t, mlsgo, 30443, b64(flip(mlsgo.bare, leafSig+5)), eraAdopted(mlsgo)),
			want: keypackages.ErrSignature, reason: "leaf node signature does not verify", cause: cipher.ErrInvalidSignature},
		{name: "flipped bit in the leaf node signature (ts-mls, framed)", ev: signed(t, tsmls, 443, b64(flip(tsmls.framed, 4+tsLeafSig)), eraMIP443(tsmls)),
			want: keypackages.ErrSignature, reason: "leaf node signature does not verify", cause: cipher.ErrInvalidSignature},
		{name: "init_key equals the leaf encryption_key", ev: signed(t, sameKeys, 30443, b64(sameKeys.bare), eraMinimal(sameKeys)),
			want: keypackages.ErrKeyPackage, reason: "init_key equals the leaf encryption_key", cause: mls.ErrInvalidKeyPackage},

		// identity
		{name: "identity of another pubkey", ev: signed(t, other, 30443, b64(mlsgo.bare), eraMinimal(mlsgo)),
			want: keypackages.ErrIdentity, reason: "not the event author's pubkey"},
		{name: "identity of another pubkey on 443", ev: signed(t, other, 443, hex.EncodeToString(tsmls.bare), eraNIPEE(tsmls)),
			want: keypackages.ErrIdentity, reason: "not the event author's pubkey"},
		{name: "hex identity on legacy 443 passes", ev: signed(t, hexIdentity, 443, hex.EncodeToString(hexIdentity.bare), eraNIPEE(hexIdentity))},
		{name: "hex identity on 30443", ev: signed(t, hexIdentity, 30443, b64(hexIdentity.bare), eraMDK08(hexIdentity)),
			want: keypackages.ErrIdentity, reason: "32 raw bytes"},
		{name: "X.509 credential", ev: signed(t, notBasic, 30443, b64(notBasic.bare), eraMinimal(notBasic)),
			want: keypackages.ErrIdentity, reason: "credential type is 0x0002"},

		// i
		{name: "missing i on 30443", ev: signed(t, mlsgo, 30443, b64(mlsgo.framed), with(eraAdopted(mlsgo), "i")),
			want: keypackages.ErrRef, reason: "missing i tag: kind 30443 must carry the KeyPackageRef " + mlsgo.ref},
		{name: "i of another KeyPackage", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "i", nostr.Tag{"i", tsmls.ref})),
			want: keypackages.ErrRef, reason: "is not the KeyPackageRef " + mlsgo.ref},
		{name: "i in uppercase", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "i", nostr.Tag{"i", strings.ToUpper(mlsgo.ref)})),
			want: keypackages.ErrRef, reason: "lowercase hex"},
		{name: "i computed over the MLSMessage", ev: signed(t, mlsgo, 30443, b64(mlsgo.framed), with(eraAdopted(mlsgo), "i", nostr.Tag{"i", framedRef})),
			want: keypackages.ErrRef, reason: "is not the KeyPackageRef"},
		{name: "two i tags", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), append(eraMDK08(mlsgo), nostr.Tag{"i", mlsgo.ref})),
			want: keypackages.ErrRef, reason: "2 i tags"},
		{name: "wrong i on 443", ev: signed(t, tsmls, 443, b64(tsmls.bare), append(eraMIP443(tsmls), nostr.Tag{"i", mlsgo.ref})),
			want: keypackages.ErrRef, reason: "is not the KeyPackageRef"},

		// d
		{name: "missing d", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "d")),
			want: keypackages.ErrSlot, reason: "missing d tag"},
		{name: "two d tags", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), append(eraMDK08(mlsgo), nostr.Tag{"d", slot})),
			want: keypackages.ErrSlot, reason: "2 d tags"},
		{name: "empty d", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "d", nostr.Tag{"d", ""})),
			want: keypackages.ErrSlot, reason: "empty d tag"},
		{name: "d without a value", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "d", nostr.Tag{"d"})),
			want: keypackages.ErrSlot, reason: "empty d tag"},
		{name: "d over 256 bytes", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "d", nostr.Tag{"d", strings.Repeat("é", 129)})),
			want: keypackages.ErrSlot, reason: "258 bytes, at most 256"},
		// The d alphabet is free: uppercase, short, a client id, 256 bytes.
		{name: "uppercase d", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "d", nostr.Tag{"d", strings.ToUpper(slot)}))},
		{name: "short d", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "d", nostr.Tag{"d", slot[:62]}))},
		{name: "client id as d", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "d", nostr.Tag{"d", "test-invitee-device"}))},
		{name: "d of 256 bytes", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), with(eraMDK08(mlsgo), "d", nostr.Tag{"d", strings.Repeat("x", 256)}))},
		{name: "d on 443 is ignored", ev: signed(t, tsmls, 443, b64(tsmls.bare), append(eraMIP443(tsmls), nostr.Tag{"d", "ANY"}))},

		// lifetime: grace either side, with an injected clock
		{name: "valid from exactly one hour before not_before", ev: signed(t, mlsgo, 30443, b64(mlsgo.framed), eraAdopted(mlsgo)), v: at(nb.Add(-time.Hour))},
		{name: "not yet valid beyond the grace", ev: signed(t, mlsgo, 30443, b64(mlsgo.framed), eraAdopted(mlsgo)), v: at(nb.Add(-time.Hour - time.Second)),
			want: keypackages.ErrLifetime, reason: "not valid until 2026-11-28T07:00:58Z, more than 1h0m0s from now"},
		{name: "valid until exactly one hour after not_after", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), eraMDK08(mlsgo)), v: at(na.Add(time.Hour))},
		{name: "expired beyond the grace", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), eraMDK08(mlsgo)), v: at(na.Add(time.Hour + time.Second)),
			want: keypackages.ErrLifetime, reason: "expired at 2027-02-19T08:00:58Z, more than 1h0m0s ago"},
		{name: "no grace", ev: signed(t, mlsgo, 30443, b64(mlsgo.bare), eraMDK08(mlsgo)),
			v:    keypackages.Validator{Now: func() time.Time { return nb.Add(-time.Second) }, Grace: -1},
			want: keypackages.ErrLifetime, reason: "not valid until"},
		{name: "inverted lifetime", ev: signed(t, inverted, 30443, b64(inverted.bare), eraMinimal(inverted)),
			want: keypackages.ErrLifetime, reason: "not_before 2026-11-28T09:05:00Z is after not_after 2026-11-28T07:05:00Z", cause: mls.ErrLifetime},

		// the cap: only with app_components
		{name: "ten years with app_components", ev: signed(t, tsmls, 30443, b64(tsmls.framed), eraAdopted(tsmls)),
			want: keypackages.ErrLifetime, reason: "lifetime lasts 315363600 s, more than the 7261200 s (84 days 1h0m0s) allowed on events with app_components"},
		{name: "ten years without app_components passes", ev: signed(t, tsmls, 30443, b64(tsmls.framed), with(eraAdopted(tsmls), "app_components"))},
		{name: "never-expiring ts-mls default with app_components", ev: signed(t, tsmlsDefault, 30443, b64(tsmlsDefault.bare), eraMix(tsmlsDefault)),
			want: keypackages.ErrLifetime, reason: "more than the 7261200 s"},
		{name: "never-expiring ts-mls default on legacy 443 passes", ev: signed(t, tsmlsDefault, 443, hex.EncodeToString(tsmlsDefault.bare), eraNIPEE(tsmlsDefault))},
		{name: "lifetime exactly at the cap", ev: signed(t, atCap, 30443, b64(atCap.framed), eraAdopted(atCap))},
		{name: "lifetime one second over the cap", ev: signed(t, overCap, 30443, b64(overCap.framed), eraAdopted(overCap)),
			want: keypackages.ErrLifetime, reason: "lasts 7261201 s"},
		{name: "empty app_components still picks the cap", ev: signed(t, overCap, 30443, b64(overCap.framed), with(eraAdopted(overCap), "app_components", nostr.Tag{"app_components"})),
			want: keypackages.ErrLifetime, reason: "lasts 7261201 s"},
		{name: "no cap configured", ev: signed(t, tsmls, 30443, b64(tsmls.framed), eraAdopted(tsmls)),
			v: keypackages.Validator{Now: func() time.Time { return clock }, MaxLifetime: -1}},

		// Info details
		{name: "last resort as an app_data_dictionary component", ev: signed(t, componentLastResort, 30443, b64(componentLastResort.framed), eraAdopted(componentLastResort)),
			check: func(t *testing.T, info keypackages.Info) {
				if !info.LastResort {
					t.Error("LastResort false for component 0x0004")
				}
			}},
		{name: "not last resort", ev: signed(t, notLastResort, 30443, b64(notLastResort.bare), eraMDK08(notLastResort)),
			check: func(t *testing.T, info keypackages.Info) {
				if info.LastResort {
					t.Error("LastResort true without the extension")
				}
			}},

		// kind
		{name: "kind 1", ev: signed(t, mlsgo, 1, b64(mlsgo.bare), eraMDK08(mlsgo)),
			want: keypackages.ErrKind, reason: "kind 1 is not a KeyPackage kind"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.v
			if v.Now == nil {
				v = at(clock)
			}
			info, err := v.Validate(tc.ev)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if info.Ref == "" || info.KeyPackage == nil {
					t.Fatalf("Info incomplete: %+v", info)
				}
				if tc.check != nil {
					tc.check(t, info)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Errorf("err = %v, does not wrap %v", err, tc.cause)
			}
			msg := keypackages.Message(err)
			t.Log(msg)
			if !strings.HasPrefix(msg, "invalid: ") || !strings.Contains(msg, tc.reason) {
				t.Errorf("message %q, want invalid: ...%s...", msg, tc.reason)
			}
			if info != (keypackages.Info{}) {
				t.Errorf("Info %+v returned with an error", info)
			}
			// Every failure matches exactly one check.
			n := 0
			for _, s := range checks {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("err %v matches %d checks", err, n)
			}
		})
	}
}

var checks = []error{
	keypackages.ErrKind, keypackages.ErrEncoding, keypackages.ErrFraming, keypackages.ErrVersion,
	keypackages.ErrCipherSuite, keypackages.ErrCipherSuiteMismatch, keypackages.ErrSignature,
	keypackages.ErrKeyPackage, keypackages.ErrIdentity, keypackages.ErrRef, keypackages.ErrLifetime,
	keypackages.ErrSlot,
}

func TestRule(t *testing.T) {
	fixtures := fixtureSources(t)
	mlsgo := sourceNamed(t, fixtures, "mlsgo-default")
	// The lead plugs it into the server's admission rules as a policy.Rule.
	var rule policy.Rule = at(clock).Rule()
	cases := []struct {
		name   string
		ev     *nostr.Event
		reject bool
		msg    string
	}{
		{"valid 30443", signed(t, mlsgo, 30443, b64(mlsgo.framed), eraAdopted(mlsgo)), false, ""},
		{"valid legacy 443", signed(t, mlsgo, 443, hex.EncodeToString(mlsgo.bare), eraNIPEE(mlsgo)), false, ""},
		{"invalid 30443", signed(t, mlsgo, 30443, b64(mlsgo.framed), with(eraAdopted(mlsgo), "d")), true,
			"invalid: missing d tag: kind 30443 needs exactly one non-empty d"},
		{"invalid 443", signed(t, mlsgo, 443, "zz", eraNIPEE(mlsgo)), true,
			"invalid: content is not hex (kind 443 without an encoding tag means hex): encoding/hex: invalid byte: U+007A 'z'"},
		{"other kinds are not its business", signed(t, mlsgo, 1, "hello", nil), false, ""},
		{"kind 445 with KeyPackage-looking tags", signed(t, mlsgo, 445, "x", eraAdopted(mlsgo)), false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reject, msg := rule(context.Background(), tc.ev)
			if reject != tc.reject || msg != tc.msg {
				t.Fatalf("rule = (%v, %q), want (%v, %q)", reject, msg, tc.reject, tc.msg)
			}
		})
	}
}

// TestValidatorDefaults checks the zero Validator: the real clock, one
// hour of grace and the 84 days + 1 hour cap, on KeyPackages made now.
func TestValidatorDefaults(t *testing.T) {
	now := uint64(time.Now().Unix())
	capSpan := uint64(keypackages.DefaultMaxLifetime / time.Second)
	if capSpan != 7_261_200 {
		t.Fatalf("DefaultMaxLifetime = %v, want 7,261,200 s", keypackages.DefaultMaxLifetime)
	}
	cases := []struct {
		name string
		lt   mls.Lifetime
		want error
	}{
		{"current, at the cap", mls.Lifetime{NotBefore: now - 60, NotAfter: now - 60 + capSpan}, nil},
		{"over the cap", mls.Lifetime{NotBefore: now - 60, NotAfter: now - 60 + capSpan + 1}, keypackages.ErrLifetime},
		{"starts within the default grace", mls.Lifetime{NotBefore: now + 1800, NotAfter: now + 86400}, nil},
		{"starts beyond the default grace", mls.Lifetime{NotBefore: now + 7200, NotAfter: now + 86400}, keypackages.ErrLifetime},
		{"ended within the default grace", mls.Lifetime{NotBefore: now - 86400, NotAfter: now - 1800}, nil},
		{"ended beyond the default grace", mls.Lifetime{NotBefore: now - 86400, NotAfter: now - 7200}, keypackages.ErrLifetime},
	}
	var v keypackages.Validator
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := ownSource(t, tc.name, ownOptions{lifetime: tc.lt})
			_, err := v.Validate(signed(t, s, 30443, b64(s.framed), eraAdopted(s)))
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMessage(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{&keypackages.Error{Check: keypackages.ErrSlot, Reason: "missing d tag"}, "invalid: missing d tag"},
		{errors.New("something else"), "invalid: something else"},
	}
	for _, tc := range cases {
		if got := keypackages.Message(tc.err); got != tc.want {
			t.Errorf("Message(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// BenchmarkValidate measures one validation of a framed 30443 from mls-go
// (two Ed25519 verifications and one SHA-256 ref dominate).
func BenchmarkValidate(b *testing.B) {
	fixtures := fixtureSources(b)
	var s source
	for _, f := range fixtures {
		if f.name == "mlsgo-default" {
			s = f
		}
	}
	ev := signed(b, s, 30443, b64(s.framed), eraAdopted(s))
	v := at(clock)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Validate(ev); err != nil {
			b.Fatal(err)
		}
	}
}
