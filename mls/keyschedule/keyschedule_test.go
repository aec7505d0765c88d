package keyschedule_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
	"github.com/burrow-relay/burrow/mls/keyschedule"
	"github.com/burrow-relay/burrow/mls/secrettree"
)

type hexb = vectortest.Hex

type keyScheduleVector struct {
	CipherSuite       uint16 `json:"cipher_suite"`
	GroupID           hexb   `json:"group_id"`
	InitialInitSecret hexb   `json:"initial_init_secret"`
	Epochs            []struct {
		TreeHash                hexb `json:"tree_hash"`
		CommitSecret            hexb `json:"commit_secret"`
		PSKSecret               hexb `json:"psk_secret"`
		ConfirmedTranscriptHash hexb `json:"confirmed_transcript_hash"`
		GroupContext            hexb `json:"group_context"`
		JoinerSecret            hexb `json:"joiner_secret"`
		WelcomeSecret           hexb `json:"welcome_secret"`
		InitSecret              hexb `json:"init_secret"`
		SenderDataSecret        hexb `json:"sender_data_secret"`
		EncryptionSecret        hexb `json:"encryption_secret"`
		ExporterSecret          hexb `json:"exporter_secret"`
		EpochAuthenticator      hexb `json:"epoch_authenticator"`
		ExternalSecret          hexb `json:"external_secret"`
		ConfirmationKey         hexb `json:"confirmation_key"`
		MembershipKey           hexb `json:"membership_key"`
		ResumptionPSK           hexb `json:"resumption_psk"`
		ExternalPub             hexb `json:"external_pub"`
		Exporter                struct {
			// The label is a string (one that happens to look like hex).
			Label   string          `json:"label"`
			Context hexb            `json:"context"`
			Length  vectortest.Uint `json:"length"`
			Secret  hexb            `json:"secret"`
		} `json:"exporter"`
	} `json:"epochs"`
}

// encodeGroupContext is a minimal GroupContext encoder for the vectors
// (version mls10, empty extensions), local to the test so that the key
// schedule stays independent of package mls.
func encodeGroupContext(suite uint16, groupID []byte, epoch uint64, treeHash, cth []byte) []byte {
	vec := func(b []byte, v []byte) []byte {
		// The vectors' values are all shorter than 64 bytes except none;
		// use the general varint form anyway.
		switch n := len(v); {
		case n < 1<<6:
			b = append(b, byte(n))
		case n < 1<<14:
			b = append(b, 0x40|byte(n>>8), byte(n))
		default:
			b = append(b, 0x80|byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		}
		return append(b, v...)
	}
	b := binary.BigEndian.AppendUint16(nil, 1)
	b = binary.BigEndian.AppendUint16(b, suite)
	b = vec(b, groupID)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = vec(b, treeHash)
	b = vec(b, cth)
	return vec(b, nil)
}

func TestKeyScheduleVectors(t *testing.T) {
	const file = "key-schedule.json"
	var cases []keyScheduleVector
	vectortest.Load(t, file, &cases)
	counter := vectortest.NewSuiteCounter()
	for _, tc := range cases {
		suite, err := cipher.New(cipher.CipherSuite(tc.CipherSuite))
		if err != nil {
			if !errors.Is(err, cipher.ErrUnsupportedCipherSuite) || cipher.CipherSuite(tc.CipherSuite).Supported() {
				t.Fatalf("suite %d: %v", tc.CipherSuite, err)
			}
			for range tc.Epochs {
				counter.Unsupported(file, tc.CipherSuite)
			}
			continue
		}
		t.Run(suite.ID().String(), func(t *testing.T) {
			var prev *keyschedule.Epoch
			for i, ep := range tc.Epochs {
				gc := encodeGroupContext(tc.CipherSuite, tc.GroupID, uint64(i), ep.TreeHash, ep.ConfirmedTranscriptHash)
				if !bytes.Equal(gc, ep.GroupContext) {
					t.Fatalf("epoch %d: group_context = %x, want %x", i, gc, ep.GroupContext)
				}
				var e *keyschedule.Epoch
				if prev == nil {
					e, err = keyschedule.Derive(suite, tc.InitialInitSecret, ep.CommitSecret, ep.PSKSecret, gc)
				} else {
					e, err = prev.Next(ep.CommitSecret, ep.PSKSecret, gc)
				}
				if err != nil {
					t.Fatalf("epoch %d: %v", i, err)
				}
				ok := true
				for _, c := range []struct {
					name      string
					got, want []byte
				}{
					{"joiner_secret", e.JoinerSecret(), ep.JoinerSecret},
					{"welcome_secret", e.WelcomeSecret(), ep.WelcomeSecret},
					{"init_secret", e.InitSecret(), ep.InitSecret},
					{"sender_data_secret", e.SenderDataSecret(), ep.SenderDataSecret},
					{"encryption_secret", e.EncryptionSecret(), ep.EncryptionSecret},
					{"exporter_secret", e.ExporterSecret(), ep.ExporterSecret},
					{"epoch_authenticator", e.EpochAuthenticator(), ep.EpochAuthenticator},
					{"external_secret", e.ExternalSecret(), ep.ExternalSecret},
					{"confirmation_key", e.ConfirmationKey(), ep.ConfirmationKey},
					{"membership_key", e.MembershipKey(), ep.MembershipKey},
					{"resumption_psk", e.ResumptionPSK(), ep.ResumptionPSK},
				} {
					if !bytes.Equal(c.got, c.want) {
						t.Errorf("epoch %d: %s mismatch", i, c.name)
						ok = false
					}
				}
				// The joiner path (Welcome) must reach the same epoch.
				if j, err := keyschedule.FromJoiner(suite, ep.JoinerSecret, ep.PSKSecret, gc); err != nil || !j.EpochAuthenticator().Equal(ep.EpochAuthenticator) {
					t.Errorf("epoch %d: FromJoiner: %v", i, err)
					ok = false
				}
				if ws, err := keyschedule.WelcomeSecret(suite, ep.JoinerSecret, ep.PSKSecret); err != nil || !ws.Equal(ep.WelcomeSecret) {
					t.Errorf("epoch %d: WelcomeSecret: %v", i, err)
					ok = false
				}
				pub, err := e.ExternalPub()
				if err != nil || !bytes.Equal(pub, ep.ExternalPub) {
					t.Errorf("epoch %d: external_pub = %x, %v; want %x", i, pub, err, ep.ExternalPub)
					ok = false
				}
				x := ep.Exporter
				out, err := e.Exporter(x.Label, x.Context, int(x.Length))
				if err != nil || !out.Equal(x.Secret) {
					t.Errorf("epoch %d: MLS-Exporter mismatch (%v)", i, err)
					ok = false
				}
				if ok {
					counter.Ran(file, tc.CipherSuite)
				}
				if prev != nil {
					prev.Drop()
				}
				prev = e
			}
		})
	}
	counter.Check(t, "counts_crypto.json", file)
}

type pskVector struct {
	CipherSuite uint16 `json:"cipher_suite"`
	PSKs        []struct {
		PSKID    hexb `json:"psk_id"`
		PSK      hexb `json:"psk"`
		PSKNonce hexb `json:"psk_nonce"`
	} `json:"psks"`
	PSKSecret hexb `json:"psk_secret"`
}

func TestPSKSecretVectors(t *testing.T) {
	const file = "psk_secret.json"
	var cases []pskVector
	vectortest.Load(t, file, &cases)
	counter := vectortest.NewSuiteCounter()
	for i, tc := range cases {
		suite, err := cipher.New(cipher.CipherSuite(tc.CipherSuite))
		if err != nil {
			if !errors.Is(err, cipher.ErrUnsupportedCipherSuite) || cipher.CipherSuite(tc.CipherSuite).Supported() {
				t.Fatalf("suite %d: %v", tc.CipherSuite, err)
			}
			counter.Unsupported(file, tc.CipherSuite)
			continue
		}
		psks := make([]keyschedule.PSK, len(tc.PSKs))
		for j, p := range tc.PSKs {
			id, err := keyschedule.ExternalPSKID(p.PSKID, p.PSKNonce)
			if err != nil {
				t.Fatal(err)
			}
			psks[j] = keyschedule.PSK{ID: id, Secret: cipher.Secret(p.PSK)}
		}
		got, err := keyschedule.PSKSecret(suite, psks)
		if err != nil || !got.Equal(tc.PSKSecret) {
			t.Errorf("case %d (suite %d, %d psks): psk_secret mismatch (%v)", i, tc.CipherSuite, len(psks), err)
			continue
		}
		counter.Ran(file, tc.CipherSuite)
	}
	counter.Check(t, "counts_crypto.json", file)
}

func testSuite(t testing.TB) *cipher.Suite {
	t.Helper()
	s, err := cipher.New(cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestExternalInit checks that a joiner and a member derive the same
// init_secret through the external key pair (RFC 9420 section 8.3).
func TestExternalInit(t *testing.T) {
	s := testSuite(t)
	e, err := keyschedule.Derive(s, bytes.Repeat([]byte{1}, 32), nil, nil, []byte("gc"))
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
	if len(joinerInit) != s.Nh() || !joinerInit.Equal(memberInit) {
		t.Fatal("joiner and member external init secrets differ")
	}
}

// TestDropAndConsume checks the deletion rules: Next leaves the current
// epoch intact (a rejected Commit must not damage it), NewSecretTree
// consumes encryption_secret, Drop zeroes everything, and a consumed or
// dropped secret cannot be used again.
func TestDropAndConsume(t *testing.T) {
	s := testSuite(t)
	e, err := keyschedule.Derive(s, bytes.Repeat([]byte{1}, 32), nil, nil, []byte("gc"))
	if err != nil {
		t.Fatal(err)
	}
	n1, err := e.Next(nil, nil, []byte("gc2"))
	if err != nil {
		t.Fatal(err)
	}
	// A second attempt (say, after the first Commit was rejected) must give
	// the same epoch.
	n2, err := e.Next(nil, nil, []byte("gc2"))
	if err != nil || !n1.EpochAuthenticator().Equal(n2.EpochAuthenticator()) {
		t.Fatalf("Next is not repeatable: %v", err)
	}
	enc := e.EncryptionSecret()
	if _, err := e.NewSecretTree(4, secrettree.Config{}); err != nil {
		t.Fatal(err)
	}
	if e.EncryptionSecret() != nil || !bytes.Equal(enc, make([]byte, 32)) {
		t.Error("encryption_secret not zeroed after NewSecretTree")
	}
	if _, err := e.NewSecretTree(4, secrettree.Config{}); !errors.Is(err, keyschedule.ErrDropped) {
		t.Errorf("second NewSecretTree: %v, want ErrDropped", err)
	}
	e.DropWelcomeSecrets()
	if e.JoinerSecret() != nil || e.WelcomeSecret() != nil {
		t.Error("DropWelcomeSecrets left joiner or welcome secret")
	}
	held := []cipher.Secret{e.SenderDataSecret(), e.ExporterSecret(), e.ExternalSecret(), e.ConfirmationKey(), e.MembershipKey(), e.ResumptionPSK(), e.EpochAuthenticator(), e.InitSecret()}
	e.Drop()
	for i, h := range held {
		if len(h) != 32 || !bytes.Equal(h, make([]byte, 32)) {
			t.Errorf("secret %d not zeroed by Drop", i)
		}
	}
	if _, err := e.Next(nil, nil, []byte("gc2")); !errors.Is(err, keyschedule.ErrDropped) {
		t.Errorf("Next after Drop: %v, want ErrDropped", err)
	}
	if _, err := e.Exporter("x", nil, 32); !errors.Is(err, keyschedule.ErrDropped) {
		t.Errorf("Exporter after Drop: %v, want ErrDropped", err)
	}
	if _, err := e.ExternalPub(); !errors.Is(err, keyschedule.ErrDropped) {
		t.Errorf("ExternalPub after Drop: %v, want ErrDropped", err)
	}
	if e.VerifyConfirmationTag([]byte("cth"), make([]byte, 32)) {
		t.Error("VerifyConfirmationTag succeeded after Drop")
	}
}

func TestConfirmationTag(t *testing.T) {
	s := testSuite(t)
	e, err := keyschedule.Derive(s, bytes.Repeat([]byte{1}, 32), nil, nil, []byte("gc"))
	if err != nil {
		t.Fatal(err)
	}
	tag, err := e.ConfirmationTag([]byte("cth"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cth, tag []byte
		want     bool
	}{
		{[]byte("cth"), tag, true},
		{[]byte("cth2"), tag, false},
		{[]byte("cth"), tag[:31], false},
	}
	for i, tc := range tests {
		if got := e.VerifyConfirmationTag(tc.cth, tc.tag); got != tc.want {
			t.Errorf("case %d: VerifyConfirmationTag = %v, want %v", i, got, tc.want)
		}
	}
}

// TestEpochPrintsRedacted checks that printing an Epoch never shows a
// secret.
func TestEpochPrintsRedacted(t *testing.T) {
	s := testSuite(t)
	e, err := keyschedule.Derive(s, bytes.Repeat([]byte{1}, 32), nil, nil, []byte("gc"))
	if err != nil {
		t.Fatal(err)
	}
	secret := fmt.Sprintf("%x", []byte(e.MembershipKey()))
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		for _, v := range []any{e, *e} {
			out := fmt.Sprintf(verb, v)
			if bytes.Contains([]byte(out), []byte(secret)) || bytes.Contains([]byte(out), e.MembershipKey()) {
				t.Errorf("%s of %T reveals membership_key: %s", verb, v, out)
			}
		}
	}
}

func TestInputValidation(t *testing.T) {
	s := testSuite(t)
	good := bytes.Repeat([]byte{1}, 32)
	tests := []struct {
		name string
		run  func() error
	}{
		{"short init secret", func() error { _, err := keyschedule.Derive(s, good[:31], nil, nil, nil); return err }},
		{"long init secret", func() error { _, err := keyschedule.JoinerSecret(s, append(good, 0), nil, nil); return err }},
		{"short joiner secret", func() error { _, err := keyschedule.FromJoiner(s, good[:1], nil, nil); return err }},
		{"empty joiner secret", func() error { _, err := keyschedule.WelcomeSecret(s, nil, nil); return err }},
	}
	for _, tc := range tests {
		if err := tc.run(); !errors.Is(err, keyschedule.ErrSecretLength) {
			t.Errorf("%s: %v, want ErrSecretLength", tc.name, err)
		}
	}
}

func TestPSKIDEncoding(t *testing.T) {
	tests := []struct {
		name string
		enc  func() ([]byte, error)
		want []byte
	}{
		{"external", func() ([]byte, error) { return keyschedule.ExternalPSKID([]byte{0xaa}, []byte{0xbb, 0xcc}) },
			[]byte{1, 1, 0xaa, 2, 0xbb, 0xcc}},
		{"resumption", func() ([]byte, error) {
			return keyschedule.ResumptionPSKID(keyschedule.ResumptionBranch, []byte{0x11}, 258, []byte{0x22})
		}, []byte{2, 3, 1, 0x11, 0, 0, 0, 0, 0, 0, 1, 2, 1, 0x22}},
	}
	for _, tc := range tests {
		got, err := tc.enc()
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %x, %v; want %x", tc.name, got, err, tc.want)
		}
	}
}

func TestWelcomeKeyNonce(t *testing.T) {
	for _, id := range []cipher.CipherSuite{1, 3} {
		s, err := cipher.New(id)
		if err != nil {
			t.Fatal(err)
		}
		key, nonce, err := keyschedule.WelcomeKeyNonce(s, bytes.Repeat([]byte{5}, 32))
		if err != nil || len(key) != s.Nk() || len(nonce) != s.Nn() {
			t.Errorf("%v: key %d bytes, nonce %d bytes, %v", id, len(key), len(nonce), err)
		}
	}
}
