package mlsverify

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/codec"
	"github.com/burrow-relay/burrow/mls/keyschedule"
	"github.com/burrow-relay/burrow/mls/secrettree"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// vhex is a hex string of the vector files (null is nil).
type vhex []byte

func (h *vhex) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*h = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

// vuint is a number of the vector files, written as a number or a string.
type vuint uint64

func (u *vuint) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	v, err := strconv.ParseUint(s, 10, 64)
	*u = vuint(v)
	return err
}

// voptuint is a number or null.
type voptuint struct {
	v     uint64
	valid bool
}

func (o *voptuint) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*o = voptuint{}
		return nil
	}
	var u vuint
	err := u.UnmarshalJSON(b)
	*o = voptuint{uint64(u), err == nil}
	return err
}

// vectorTally is one file's run: cases checked, cases of suites this
// engine does not implement (4-7), and failures.
type vectorTally struct {
	ran, unsupported int
	fails            []string
}

func (t *vectorTally) fail(format string, args ...any) {
	t.fails = append(t.fails, fmt.Sprintf(format, args...))
}

// suite returns the case's cipher suite, counting unimplemented ones.
func (t *vectorTally) suite(cs vuint) *cipher.Suite {
	s, err := cipher.New(cipher.CipherSuite(cs))
	if errors.Is(err, cipher.ErrUnsupportedCipherSuite) {
		t.unsupported++
		return nil
	}
	if err != nil {
		t.fail("suite %d: %v", cs, err)
		return nil
	}
	return s
}

// vectorFile is a runner for one official vector file.
type vectorFile struct {
	name string
	run  func(raw []byte, t *vectorTally) error
}

// vectorFiles are the files the self-test runs, through the engine's
// public API. The others (messages.json, treekem.json,
// tree-operations.json, transcript-hashes.json) are checked by the engine's
// own tests, go test ./mls/...
func vectorFiles() []vectorFile {
	return []vectorFile{
		{"tree-math.json", vecTreeMath},
		{"deserialization.json", vecDeserialization},
		{"crypto-basics.json", vecCryptoBasics},
		{"secret-tree.json", vecSecretTree},
		{"key-schedule.json", vecKeySchedule},
		{"psk_secret.json", vecPSKSecret},
		{"message-protection.json", vecMessageProtection},
		{"welcome.json", vecWelcome},
		{"tree-validation.json", vecTreeValidation},
		{"passive-client-welcome.json", vecPassive},
		{"passive-client-handling-commit.json", vecPassive},
		{"passive-client-random.json", vecPassive},
		{"interop-passive/application.json", vecPassive},
		{"interop-passive/branch.json", vecPassive},
		{"interop-passive/commit.json", vecPassive},
		{"interop-passive/external_join.json", vecPassive},
		{"interop-passive/external_proposals.json", vecPassive},
		{"interop-passive/reinit.json", vecPassive},
		{"interop-passive/welcome_join.json", vecPassive},
	}
}

// notRun are the official files the self-test leaves to go test ./mls/...
var notRun = []string{"messages.json", "treekem.json", "tree-operations.json", "transcript-hashes.json"}

// RunVectors runs the official vector files found in dir, one check per
// file. A file the directory lacks fails: the flag said they are there.
// The interop-passive files are optional (not every copy has them).
func RunVectors(dir string) []Check {
	var out []Check
	for _, f := range vectorFiles() {
		c := Check{Name: "vectors: " + f.name}
		raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.name)))
		switch {
		case errors.Is(err, os.ErrNotExist) && filepath.Dir(f.name) != ".":
			c.Status, c.Detail = StatusSkip, "not in "+dir
			out = append(out, c)
			continue
		case err != nil:
			c.Status, c.Detail = StatusFail, err.Error()
			out = append(out, c)
			continue
		}
		var t vectorTally
		if err := f.run(raw, &t); err != nil {
			t.fail("%v", err)
		}
		switch {
		case len(t.fails) > 0:
			c.Status, c.Detail = StatusFail, fmt.Sprintf("%d failures; first: %s", len(t.fails), t.fails[0])
		case t.ran == 0:
			c.Status, c.Detail = StatusFail, "no case ran"
		default:
			c.Status, c.Detail = StatusPass, fmt.Sprintf("%d cases", t.ran)
			if t.unsupported > 0 {
				c.Detail += fmt.Sprintf(" (%d more of suites 4-7, not implemented)", t.unsupported)
			}
		}
		out = append(out, c)
	}
	out = append(out, Check{Name: "vectors: " + fmt.Sprint(notRun), Status: StatusSkip, Detail: "checked by go test ./mls/..., not by the self-test"})
	return out
}

func vecTreeMath(raw []byte, t *vectorTally) error {
	var cases []struct {
		NLeaves vuint      `json:"n_leaves"`
		NNodes  vuint      `json:"n_nodes"`
		Root    vuint      `json:"root"`
		Left    []voptuint `json:"left"`
		Right   []voptuint `json:"right"`
		Parent  []voptuint `json:"parent"`
		Sibling []voptuint `json:"sibling"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		return err
	}
	for i, tc := range cases {
		n := uint32(tc.NLeaves)
		if uint64(treemath.NodeWidth(n)) != uint64(tc.NNodes) || uint64(treemath.Root(n)) != uint64(tc.Root) {
			t.fail("case %d: width or root", i)
			continue
		}
		ok := true
		for _, f := range []struct {
			want []voptuint
			f    func(treemath.NodeIndex) (treemath.NodeIndex, bool)
		}{
			{tc.Left, treemath.Left},
			{tc.Right, treemath.Right},
			{tc.Parent, func(x treemath.NodeIndex) (treemath.NodeIndex, bool) { return treemath.Parent(x, n) }},
			{tc.Sibling, func(x treemath.NodeIndex) (treemath.NodeIndex, bool) { return treemath.Sibling(x, n) }},
		} {
			for x, want := range f.want {
				got, has := f.f(treemath.NodeIndex(x))
				if has != want.valid || (has && uint64(got) != want.v) {
					ok = false
				}
			}
		}
		if !ok {
			t.fail("case %d (%d leaves): a node relation differs", i, n)
			continue
		}
		t.ran++
	}
	return nil
}

func vecDeserialization(raw []byte, t *vectorTally) error {
	var cases []struct {
		Header vhex  `json:"vlbytes_header"`
		Length vuint `json:"length"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		return err
	}
	for i, tc := range cases {
		r := codec.NewReader(tc.Header)
		got := r.Varint()
		var w codec.Writer
		w.Varint(uint64(tc.Length))
		if r.Finish() != nil || got != uint64(tc.Length) || !bytes.Equal(w.Bytes(), tc.Header) {
			t.fail("case %d: header %x, length %d", i, []byte(tc.Header), tc.Length)
			continue
		}
		t.ran++
	}
	return nil
}

func vecCryptoBasics(raw []byte, t *vectorTally) error {
	var cases []struct {
		CipherSuite vuint `json:"cipher_suite"`
		RefHash     struct {
			Label      string
			Value, Out vhex
		} `json:"ref_hash"`
		ExpandWithLabel struct {
			Secret, Context, Out vhex
			Label                string
			Length               vuint
		} `json:"expand_with_label"`
		DeriveSecret struct {
			Secret, Out vhex
			Label       string
		} `json:"derive_secret"`
		DeriveTreeSecret struct {
			Secret, Out        vhex
			Label              string
			Generation, Length vuint
		} `json:"derive_tree_secret"`
		SignWithLabel struct {
			Pub, Content, Signature vhex
			Label                   string
		} `json:"sign_with_label"`
		EncryptWithLabel struct {
			Priv, Context, Plaintext, Ciphertext vhex
			KEMOutput                            vhex `json:"kem_output"`
			Label                                string
		} `json:"encrypt_with_label"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		return err
	}
	for _, tc := range cases {
		s := t.suite(tc.CipherSuite)
		if s == nil {
			continue
		}
		var bad []string
		if rh, err := s.RefHash(tc.RefHash.Label, tc.RefHash.Value); err != nil || !bytes.Equal(rh, tc.RefHash.Out) {
			bad = append(bad, "RefHash")
		}
		e := tc.ExpandWithLabel
		if out, err := s.ExpandWithLabel(e.Secret, e.Label, e.Context, int(e.Length)); err != nil || !out.Equal(e.Out) {
			bad = append(bad, "ExpandWithLabel")
		}
		if out, err := s.DeriveSecret(tc.DeriveSecret.Secret, tc.DeriveSecret.Label); err != nil || !out.Equal(tc.DeriveSecret.Out) {
			bad = append(bad, "DeriveSecret")
		}
		d := tc.DeriveTreeSecret
		if out, err := s.DeriveTreeSecret(d.Secret, d.Label, uint32(d.Generation), int(d.Length)); err != nil || !out.Equal(d.Out) {
			bad = append(bad, "DeriveTreeSecret")
		}
		sw := tc.SignWithLabel
		if s.VerifyWithLabel(sw.Pub, sw.Label, sw.Content, sw.Signature) != nil {
			bad = append(bad, "VerifyWithLabel")
		}
		ew := tc.EncryptWithLabel
		if hk, err := s.ParseHPKEPrivateKey(ew.Priv); err != nil {
			bad = append(bad, "HPKE key")
		} else if pt, err := s.DecryptWithLabel(hk, ew.Label, ew.Context, ew.KEMOutput, ew.Ciphertext); err != nil || !bytes.Equal(pt, ew.Plaintext) {
			bad = append(bad, "DecryptWithLabel")
		}
		if len(bad) > 0 {
			t.fail("suite %d: %v", tc.CipherSuite, bad)
			continue
		}
		t.ran++
	}
	return nil
}

func vecSecretTree(raw []byte, t *vectorTally) error {
	var cases []struct {
		CipherSuite vuint `json:"cipher_suite"`
		SenderData  struct {
			SenderDataSecret vhex `json:"sender_data_secret"`
			Ciphertext       vhex
			Key, Nonce       vhex
		} `json:"sender_data"`
		EncryptionSecret vhex `json:"encryption_secret"`
		Leaves           [][]struct {
			Generation       vuint
			HandshakeKey     vhex `json:"handshake_key"`
			HandshakeNonce   vhex `json:"handshake_nonce"`
			ApplicationKey   vhex `json:"application_key"`
			ApplicationNonce vhex `json:"application_nonce"`
		} `json:"leaves"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		return err
	}
	for i, tc := range cases {
		s := t.suite(tc.CipherSuite)
		if s == nil {
			continue
		}
		sd := tc.SenderData
		key, nonce, err := secrettree.SenderDataKeyNonce(s, sd.SenderDataSecret, sd.Ciphertext)
		if err != nil || !key.Equal(sd.Key) || !nonce.Equal(sd.Nonce) {
			t.fail("case %d: sender data key or nonce", i)
			continue
		}
		tree, err := secrettree.New(s, tc.EncryptionSecret, uint32(len(tc.Leaves)), secrettree.Config{})
		if err != nil {
			t.fail("case %d: %v", i, err)
			continue
		}
		ok := true
		for leaf, gens := range tc.Leaves {
			for _, g := range gens {
				hs, err1 := tree.Take(uint32(leaf), secrettree.Handshake, uint32(g.Generation))
				app, err2 := tree.Take(uint32(leaf), secrettree.Application, uint32(g.Generation))
				if err1 != nil || err2 != nil || !hs.Key.Equal(g.HandshakeKey) || !hs.Nonce.Equal(g.HandshakeNonce) ||
					!app.Key.Equal(g.ApplicationKey) || !app.Nonce.Equal(g.ApplicationNonce) {
					ok = false
				}
			}
		}
		if !ok {
			t.fail("case %d (suite %d): a ratchet key or nonce differs", i, tc.CipherSuite)
			continue
		}
		t.ran++
	}
	return nil
}

func vecKeySchedule(raw []byte, t *vectorTally) error {
	var cases []struct {
		CipherSuite       vuint `json:"cipher_suite"`
		InitialInitSecret vhex  `json:"initial_init_secret"`
		Epochs            []struct {
			CommitSecret       vhex `json:"commit_secret"`
			PSKSecret          vhex `json:"psk_secret"`
			GroupContext       vhex `json:"group_context"`
			JoinerSecret       vhex `json:"joiner_secret"`
			WelcomeSecret      vhex `json:"welcome_secret"`
			InitSecret         vhex `json:"init_secret"`
			SenderDataSecret   vhex `json:"sender_data_secret"`
			EncryptionSecret   vhex `json:"encryption_secret"`
			ExporterSecret     vhex `json:"exporter_secret"`
			EpochAuthenticator vhex `json:"epoch_authenticator"`
			ExternalSecret     vhex `json:"external_secret"`
			ConfirmationKey    vhex `json:"confirmation_key"`
			MembershipKey      vhex `json:"membership_key"`
			ResumptionPSK      vhex `json:"resumption_psk"`
			ExternalPub        vhex `json:"external_pub"`
			Exporter           struct {
				// The label is a string that happens to look like hex.
				Label           string
				Context, Secret vhex
				Length          vuint
			} `json:"exporter"`
		} `json:"epochs"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		return err
	}
	for _, tc := range cases {
		s := t.suite(tc.CipherSuite)
		if s == nil {
			t.unsupported += len(tc.Epochs) - 1
			continue
		}
		var prev *keyschedule.Epoch
		for i, ep := range tc.Epochs {
			var e *keyschedule.Epoch
			var err error
			if prev == nil {
				e, err = keyschedule.Derive(s, tc.InitialInitSecret, ep.CommitSecret, ep.PSKSecret, ep.GroupContext)
			} else {
				e, err = prev.Next(ep.CommitSecret, ep.PSKSecret, ep.GroupContext)
				prev.Drop()
			}
			if err != nil {
				t.fail("suite %d epoch %d: %v", tc.CipherSuite, i, err)
				break
			}
			prev = e
			same := bytes.Equal(e.JoinerSecret(), ep.JoinerSecret) && bytes.Equal(e.WelcomeSecret(), ep.WelcomeSecret) &&
				bytes.Equal(e.InitSecret(), ep.InitSecret) && bytes.Equal(e.SenderDataSecret(), ep.SenderDataSecret) &&
				bytes.Equal(e.EncryptionSecret(), ep.EncryptionSecret) && bytes.Equal(e.ExporterSecret(), ep.ExporterSecret) &&
				bytes.Equal(e.EpochAuthenticator(), ep.EpochAuthenticator) && bytes.Equal(e.ExternalSecret(), ep.ExternalSecret) &&
				bytes.Equal(e.ConfirmationKey(), ep.ConfirmationKey) && bytes.Equal(e.MembershipKey(), ep.MembershipKey) &&
				bytes.Equal(e.ResumptionPSK(), ep.ResumptionPSK)
			pub, err1 := e.ExternalPub()
			x, err2 := e.Exporter(ep.Exporter.Label, ep.Exporter.Context, int(ep.Exporter.Length))
			if !same || err1 != nil || err2 != nil || !bytes.Equal(pub, ep.ExternalPub) || !x.Equal(ep.Exporter.Secret) {
				t.fail("suite %d epoch %d: a secret differs", tc.CipherSuite, i)
				continue
			}
			t.ran++
		}
		if prev != nil {
			prev.Drop()
		}
	}
	return nil
}

func vecPSKSecret(raw []byte, t *vectorTally) error {
	var cases []struct {
		CipherSuite vuint `json:"cipher_suite"`
		PSKs        []struct {
			PSKID    vhex `json:"psk_id"`
			PSK      vhex `json:"psk"`
			PSKNonce vhex `json:"psk_nonce"`
		} `json:"psks"`
		PSKSecret vhex `json:"psk_secret"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		return err
	}
	for i, tc := range cases {
		s := t.suite(tc.CipherSuite)
		if s == nil {
			continue
		}
		psks := make([]keyschedule.PSK, len(tc.PSKs))
		for j, p := range tc.PSKs {
			id, err := keyschedule.ExternalPSKID(p.PSKID, p.PSKNonce)
			if err != nil {
				return err
			}
			psks[j] = keyschedule.PSK{ID: id, Secret: cipher.Secret(p.PSK)}
		}
		got, err := keyschedule.PSKSecret(s, psks)
		if err != nil || !got.Equal(tc.PSKSecret) {
			t.fail("case %d (suite %d, %d PSKs): psk_secret differs", i, tc.CipherSuite, len(psks))
			continue
		}
		t.ran++
	}
	return nil
}

func vecMessageProtection(raw []byte, t *vectorTally) error {
	var cases []struct {
		CipherSuite             vuint `json:"cipher_suite"`
		GroupID                 vhex  `json:"group_id"`
		Epoch                   vuint `json:"epoch"`
		TreeHash                vhex  `json:"tree_hash"`
		ConfirmedTranscriptHash vhex  `json:"confirmed_transcript_hash"`
		SignaturePub            vhex  `json:"signature_pub"`
		EncryptionSecret        vhex  `json:"encryption_secret"`
		SenderDataSecret        vhex  `json:"sender_data_secret"`
		MembershipKey           vhex  `json:"membership_key"`
		ProposalPub             vhex  `json:"proposal_pub"`
		ProposalPriv            vhex  `json:"proposal_priv"`
		CommitPub               vhex  `json:"commit_pub"`
		CommitPriv              vhex  `json:"commit_priv"`
		Application             vhex  `json:"application"`
		ApplicationPriv         vhex  `json:"application_priv"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		return err
	}
	for i, tc := range cases {
		s := t.suite(tc.CipherSuite)
		if s == nil {
			continue
		}
		ctx := &mls.GroupContext{Version: mls.MLS10, CipherSuite: mls.CipherSuite(tc.CipherSuite), GroupID: tc.GroupID,
			Epoch: uint64(tc.Epoch), TreeHash: tc.TreeHash, ConfirmedTranscriptHash: tc.ConfirmedTranscriptHash}
		var bad []string
		for name, pub := range map[string]vhex{"proposal": tc.ProposalPub, "commit": tc.CommitPub} {
			m, err := mls.DecodeMLSMessage(pub)
			if err != nil || m.PublicMessage == nil ||
				mls.VerifyContentSignature(s, tc.SignaturePub, mls.WireFormatPublicMessage, &m.PublicMessage.Content, m.PublicMessage.Auth.Signature, ctx) != nil ||
				mls.VerifyMembershipTag(s, tc.MembershipKey, m.PublicMessage, ctx) != nil {
				bad = append(bad, name+" PublicMessage")
			}
		}
		for name, prv := range map[string]vhex{"proposal": tc.ProposalPriv, "commit": tc.CommitPriv, "application": tc.ApplicationPriv} {
			// Each message is generation 0 of its ratchet: a fresh tree
			// for each.
			st, err := secrettree.New(s, tc.EncryptionSecret, 2, secrettree.Config{})
			if err != nil {
				return err
			}
			m, err := mls.DecodeMLSMessage(prv)
			if err != nil || m.PrivateMessage == nil {
				bad = append(bad, name+" PrivateMessage decode")
				continue
			}
			content, auth, err := mls.DecryptPrivateMessage(s, st, tc.SenderDataSecret, m.PrivateMessage)
			if err != nil || content.Sender.Index != 1 ||
				mls.VerifyContentSignature(s, tc.SignaturePub, mls.WireFormatPrivateMessage, content, auth.Signature, ctx) != nil ||
				(name == "application" && !bytes.Equal(content.ApplicationData, tc.Application)) {
				bad = append(bad, name+" PrivateMessage")
			}
		}
		if len(bad) > 0 {
			slices.Sort(bad)
			t.fail("case %d (suite %d): %v", i, tc.CipherSuite, bad)
			continue
		}
		t.ran++
	}
	return nil
}

func vecWelcome(raw []byte, t *vectorTally) error {
	var cases []struct {
		CipherSuite vuint `json:"cipher_suite"`
		InitPriv    vhex  `json:"init_priv"`
		KeyPackage  vhex  `json:"key_package"`
		SignerPub   vhex  `json:"signer_pub"`
		Welcome     vhex  `json:"welcome"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		return err
	}
	for i, tc := range cases {
		s := t.suite(tc.CipherSuite)
		if s == nil {
			continue
		}
		if err := checkWelcome(s, tc.KeyPackage, tc.InitPriv, tc.SignerPub, tc.Welcome); err != nil {
			t.fail("case %d (suite %d): %v", i, tc.CipherSuite, err)
			continue
		}
		t.ran++
	}
	return nil
}

// checkWelcome opens a Welcome with the KeyPackage's init key, checks the
// GroupInfo's signature and recomputes its confirmation tag.
func checkWelcome(s *cipher.Suite, kpMsg, initPriv, signerPub, welcome []byte) error {
	kp, err := mls.DecodeMLSMessage(kpMsg)
	if err != nil || kp.KeyPackage == nil {
		return fmt.Errorf("key package: %v", err)
	}
	wm, err := mls.DecodeMLSMessage(welcome)
	if err != nil || wm.Welcome == nil {
		return fmt.Errorf("welcome: %v", err)
	}
	b, err := kp.KeyPackage.Bytes()
	if err != nil {
		return err
	}
	ref, err := s.KeyPackageRef(b)
	if err != nil {
		return err
	}
	egs, err := wm.Welcome.FindSecrets(ref)
	if err != nil {
		return err
	}
	ik, err := s.ParseHPKEPrivateKey(initPriv)
	if err != nil {
		return err
	}
	gs, err := mls.DecryptGroupSecrets(s, egs, ik, wm.Welcome.EncryptedGroupInfo)
	if err != nil {
		return err
	}
	psk, err := keyschedule.PSKSecret(s, nil)
	if err != nil {
		return err
	}
	ws, err := keyschedule.WelcomeSecret(s, gs.JoinerSecret, psk)
	if err != nil {
		return err
	}
	gi, err := mls.DecryptGroupInfo(s, ws, wm.Welcome.EncryptedGroupInfo)
	if err != nil {
		return err
	}
	if err := mls.VerifyGroupInfoSignature(s, gi, signerPub); err != nil {
		return err
	}
	gc, err := mls.Marshal(&gi.GroupContext)
	if err != nil {
		return err
	}
	e, err := keyschedule.FromJoiner(s, gs.JoinerSecret, psk, gc)
	if err != nil {
		return err
	}
	defer e.Drop()
	if tag, err := e.ConfirmationTag(gi.GroupContext.ConfirmedTranscriptHash); err != nil || !bytes.Equal(tag, gi.ConfirmationTag) {
		return fmt.Errorf("confirmation tag differs")
	}
	return nil
}

func vecTreeValidation(raw []byte, t *vectorTally) error {
	var cases []struct {
		CipherSuite vuint     `json:"cipher_suite"`
		Tree        vhex      `json:"tree"`
		TreeHashes  []vhex    `json:"tree_hashes"`
		Resolutions [][]vuint `json:"resolutions"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		return err
	}
	for i, tc := range cases {
		s := t.suite(tc.CipherSuite)
		if s == nil {
			continue
		}
		rt, err := mls.DecodeRatchetTree(tc.Tree)
		if err != nil {
			t.fail("case %d: %v", i, err)
			continue
		}
		tree, err := mls.NewTree(rt)
		if err != nil {
			t.fail("case %d: %v", i, err)
			continue
		}
		hashes, err := tree.TreeHashes(s)
		ok := err == nil && len(hashes) == len(tc.TreeHashes) && tree.VerifyParentHashes(s) == nil
		for x := range tc.TreeHashes {
			if !ok || !bytes.Equal(hashes[x], tc.TreeHashes[x]) {
				ok = false
				break
			}
			res := tree.Resolution(treemath.NodeIndex(x))
			if !slices.EqualFunc(res, tc.Resolutions[x], func(a treemath.NodeIndex, b vuint) bool { return uint64(a) == uint64(b) }) {
				ok = false
			}
		}
		if !ok {
			t.fail("case %d (suite %d): a tree hash, resolution or parent hash differs (%v)", i, tc.CipherSuite, err)
			continue
		}
		t.ran++
	}
	return nil
}

// vecPassive joins from each case's Welcome and follows its epochs,
// comparing epoch authenticators, as a passive client does.
func vecPassive(raw []byte, t *vectorTally) error {
	var cases []struct {
		CipherSuite  vuint `json:"cipher_suite"`
		ExternalPSKs []struct {
			PSKID vhex `json:"psk_id"`
			PSK   vhex `json:"psk"`
		} `json:"external_psks"`
		KeyPackage                vhex `json:"key_package"`
		SignaturePriv             vhex `json:"signature_priv"`
		EncryptionPriv            vhex `json:"encryption_priv"`
		InitPriv                  vhex `json:"init_priv"`
		Welcome                   vhex `json:"welcome"`
		RatchetTree               vhex `json:"ratchet_tree"`
		InitialEpochAuthenticator vhex `json:"initial_epoch_authenticator"`
		Epochs                    []struct {
			Proposals          []vhex `json:"proposals"`
			Commit             vhex   `json:"commit"`
			EpochAuthenticator vhex   `json:"epoch_authenticator"`
		} `json:"epochs"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		return err
	}
	for i, tc := range cases {
		s := t.suite(tc.CipherSuite)
		if s == nil {
			continue
		}
		err := func() error {
			kp, err := mls.DecodeMLSMessage(tc.KeyPackage)
			if err != nil || kp.KeyPackage == nil {
				return fmt.Errorf("key package: %v", err)
			}
			ik, err := s.ParseHPKEPrivateKey(tc.InitPriv)
			if err != nil {
				return err
			}
			ek, err := s.ParseHPKEPrivateKey(tc.EncryptionPriv)
			if err != nil {
				return err
			}
			sk, err := s.ParseSignatureKey(tc.SignaturePriv)
			if err != nil {
				return err
			}
			var opts mls.JoinOptions
			if tc.RatchetTree != nil {
				if opts.RatchetTree, err = mls.DecodeRatchetTree(tc.RatchetTree); err != nil {
					return err
				}
			}
			for _, p := range tc.ExternalPSKs {
				opts.PSKs = append(opts.PSKs, mls.PSKEntry{ID: p.PSKID, Secret: p.PSK})
			}
			g, err := mls.JoinFromWelcome(tc.Welcome, kp.KeyPackage, &mls.KeyPackagePrivate{InitKey: ik, EncryptionKey: ek}, sk, opts, mls.GroupConfig{})
			if err != nil {
				return fmt.Errorf("join: %w", err)
			}
			if !bytes.Equal(g.EpochAuthenticator(), tc.InitialEpochAuthenticator) {
				return fmt.Errorf("initial epoch authenticator differs")
			}
			for j, ep := range tc.Epochs {
				for _, p := range ep.Proposals {
					if _, err := g.ProcessMessage(p); err != nil {
						return fmt.Errorf("epoch %d proposal: %w", j, err)
					}
				}
				if _, err := g.ProcessMessage(ep.Commit); err != nil {
					return fmt.Errorf("epoch %d commit: %w", j, err)
				}
				if !bytes.Equal(g.EpochAuthenticator(), ep.EpochAuthenticator) {
					return fmt.Errorf("epoch %d: epoch authenticator differs", j)
				}
			}
			return nil
		}()
		if err != nil {
			t.fail("case %d (suite %d): %v", i, tc.CipherSuite, err)
			continue
		}
		t.ran++
	}
	return nil
}
