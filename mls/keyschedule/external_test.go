package keyschedule_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/keyschedule"
)

// HPKE algorithm identifiers of RFC 9180 section 7.
const (
	kemX25519      = 0x0020
	kemP256        = 0x0010
	kdfHKDFSHA256  = 0x0001
	aeadAES128GCM  = 0x0001
	aeadChaCha20   = 0x0003
	aeadExportOnly = 0xffff
)

// hpkeRef is a from-the-RFC computation of the HPKE base-mode exporter
// (RFC 9180 sections 4.1, 5.1 and 5.3) with DHKEM and HKDF-SHA256, written
// separately from crypto/hpke so that a wiring mistake in mls/cipher (such
// as the wrong AEAD id) shows up as a different secret.
type hpkeRef struct {
	curve         ecdh.Curve
	kem, kdf, aad uint16
}

func (h hpkeRef) labeledExtract(t *testing.T, suiteID []byte, salt []byte, label string, ikm []byte) []byte {
	t.Helper()
	in := append(append(append([]byte("HPKE-v1"), suiteID...), label...), ikm...)
	out, err := hkdf.Extract(sha256.New, in, salt)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (h hpkeRef) labeledExpand(t *testing.T, suiteID []byte, prk []byte, label string, info []byte, n int) []byte {
	t.Helper()
	in := binary.BigEndian.AppendUint16(nil, uint16(n))
	in = append(append(append(append(in, "HPKE-v1"...), suiteID...), label...), info...)
	out, err := hkdf.Expand(sha256.New, prk, string(in), n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// export is Decap(enc, skR) followed by KeySchedule(mode_base, ss, info,
// "", "") and Context.Export(exporterContext, n).
func (h hpkeRef) export(t *testing.T, skR, enc, info []byte, exporterContext string, n int) []byte {
	t.Helper()
	priv, err := h.curve.NewPrivateKey(skR)
	if err != nil {
		t.Fatal(err)
	}
	pkE, err := h.curve.NewPublicKey(enc)
	if err != nil {
		t.Fatal(err)
	}
	dh, err := priv.ECDH(pkE)
	if err != nil {
		t.Fatal(err)
	}
	kemSuite := binary.BigEndian.AppendUint16([]byte("KEM"), h.kem)
	kemContext := append(append([]byte{}, enc...), priv.PublicKey().Bytes()...)
	eaePRK := h.labeledExtract(t, kemSuite, nil, "eae_prk", dh)
	shared := h.labeledExpand(t, kemSuite, eaePRK, "shared_secret", kemContext, 32)

	suite := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16([]byte("HPKE"), h.kem), h.kdf), h.aad)
	ksContext := append([]byte{0}, h.labeledExtract(t, suite, nil, "psk_id_hash", nil)...)
	ksContext = append(ksContext, h.labeledExtract(t, suite, nil, "info_hash", info)...)
	secret := h.labeledExtract(t, suite, shared, "secret", nil)
	exporter := h.labeledExpand(t, suite, secret, "exp", ksContext, sha256.Size)
	return h.labeledExpand(t, suite, exporter, "sec", []byte(exporterContext), n)
}

// TestExternalInitKnownAnswer checks both halves of the external init
// (RFC 9420 section 8.3) against the independent computation above: the
// init secret must come from an HPKE context of the group's full suite
// (KEM, KDF and AEAD). An export-only context, which differs only in the
// AEAD id of the key schedule, must give a different secret, so this test
// fails if mls/cipher sets up the context without the suite's AEAD.
func TestExternalInitKnownAnswer(t *testing.T) {
	tests := []struct {
		suite cipher.CipherSuite
		ref   hpkeRef
	}{
		{cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519, hpkeRef{ecdh.X25519(), kemX25519, kdfHKDFSHA256, aeadAES128GCM}},
		{cipher.MLS128DHKEMP256AES128GCMSHA256P256, hpkeRef{ecdh.P256(), kemP256, kdfHKDFSHA256, aeadAES128GCM}},
		{cipher.MLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519, hpkeRef{ecdh.X25519(), kemX25519, kdfHKDFSHA256, aeadChaCha20}},
	}
	const label = "MLS 1.0 external init secret"
	for _, tc := range tests {
		t.Run(tc.suite.String(), func(t *testing.T) {
			s, err := cipher.New(tc.suite)
			if err != nil {
				t.Fatal(err)
			}
			e, err := keyschedule.Derive(s, bytes.Repeat([]byte{7}, s.Nh()), nil, nil, []byte("group context"))
			if err != nil {
				t.Fatal(err)
			}
			pub, err := e.ExternalPub()
			if err != nil {
				t.Fatal(err)
			}
			kemOutput, joinerInit, err := keyschedule.NewExternalInit(s, pub, nil)
			if err != nil {
				t.Fatal(err)
			}
			memberInit, err := e.ExternalInitSecret(kemOutput)
			if err != nil {
				t.Fatal(err)
			}
			kp, err := e.ExternalKeyPair()
			if err != nil {
				t.Fatal(err)
			}
			skR, err := kp.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			want := tc.ref.export(t, skR, kemOutput, nil, label, s.Nh())
			exportOnly := tc.ref
			exportOnly.aad = aeadExportOnly
			if bytes.Equal(want, exportOnly.export(t, skR, kemOutput, nil, label, s.Nh())) {
				t.Fatal("reference: the AEAD id does not change the exported secret")
			}
			if !bytes.Equal(joinerInit, want) {
				t.Errorf("joiner init_secret = %x, want %x", []byte(joinerInit), want)
			}
			if !bytes.Equal(memberInit, want) {
				t.Errorf("member init_secret = %x, want %x", []byte(memberInit), want)
			}
		})
	}
}
