package mls_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/codec"
)

func sampleLeaf(src mls.LeafNodeSource) mls.LeafNode {
	return mls.LeafNode{
		EncryptionKey: bytes.Repeat([]byte{1}, 32),
		SignatureKey:  bytes.Repeat([]byte{2}, 32),
		Credential:    mls.Credential{Type: mls.CredentialBasic, Identity: []byte("alice")},
		Capabilities: mls.Capabilities{
			Versions:     []mls.ProtocolVersion{mls.MLS10},
			CipherSuites: []mls.CipherSuite{1, 2, 3},
			Extensions:   []mls.ExtensionType{mls.ExtAppDataDictionary, mls.ExtLastResort, 0xf2ee},
			Proposals:    []mls.ProposalType{mls.ProposalSelfRemove, mls.ProposalAppDataUpdate},
			Credentials:  []mls.CredentialType{mls.CredentialBasic},
		},
		Source:     src,
		Lifetime:   mls.Lifetime{NotBefore: 1, NotAfter: 1 << 40},
		ParentHash: []byte{9, 9, 9},
		Extensions: mls.Extensions{{Type: 0xf2ee, Data: []byte("marmot")}},
		Signature:  bytes.Repeat([]byte{3}, 64),
	}
}

// roundTrip encodes v, decodes into fresh, and re-encodes: both encodings
// must agree.
func roundTrip(t *testing.T, name string, v mls.Encoder, fresh mls.Decoder) {
	t.Helper()
	b, err := mls.Marshal(v)
	if err != nil {
		t.Fatalf("%s: encode: %v", name, err)
	}
	if err := mls.Unmarshal(b, fresh); err != nil {
		t.Fatalf("%s: decode: %v", name, err)
	}
	b2, err := mls.Marshal(fresh.(mls.Encoder))
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("%s: re-encoding differs (%v)\n%x\n%x", name, err, b, b2)
	}
}

func TestProposalRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		p     mls.Proposal
		check func(t *testing.T, p *mls.Proposal)
	}{
		{name: "self_remove", p: mls.Proposal{Type: mls.ProposalSelfRemove}},
		{name: "app_data_update update", p: mls.Proposal{Type: mls.ProposalAppDataUpdate,
			AppDataUpdate: &mls.AppDataUpdate{ComponentID: 0x8001, Op: mls.AppDataOpUpdate, Update: []byte("profile")}},
			check: func(t *testing.T, p *mls.Proposal) {
				if p.AppDataUpdate.ComponentID != 0x8001 || string(p.AppDataUpdate.Update) != "profile" {
					t.Errorf("got %+v", p.AppDataUpdate)
				}
			}},
		{name: "app_data_update remove", p: mls.Proposal{Type: mls.ProposalAppDataUpdate,
			AppDataUpdate: &mls.AppDataUpdate{ComponentID: 0x8003, Op: mls.AppDataOpRemove}}},
		{name: "unknown type kept", p: mls.Proposal{Type: 0x0009, Unknown: []byte{0x80, 0x01, 0x02}},
			check: func(t *testing.T, p *mls.Proposal) {
				if !bytes.Equal(p.Unknown, []byte{0x80, 0x01, 0x02}) {
					t.Errorf("unknown body %x", p.Unknown)
				}
			}},
		{name: "remove", p: mls.Proposal{Type: mls.ProposalRemove, Remove: &mls.Remove{Removed: 7}}},
		{name: "psk resumption", p: mls.Proposal{Type: mls.ProposalPSK, PreSharedKey: &mls.PreSharedKey{PSK: mls.PreSharedKeyID{
			Type: mls.PSKResumption, Usage: mls.ResumptionBranch, PSKGroupID: []byte("g"), PSKEpoch: 5, PSKNonce: []byte{1, 2}}}}},
		{name: "update", p: mls.Proposal{Type: mls.ProposalUpdate, Update: &mls.Update{LeafNode: sampleLeaf(mls.LeafNodeSourceUpdate)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got mls.Proposal
			roundTrip(t, tc.name, &tc.p, &got)
			if got.Type != tc.p.Type {
				t.Fatalf("type %d, want %d", got.Type, tc.p.Type)
			}
			if tc.check != nil {
				tc.check(t, &got)
			}
		})
	}
}

func TestLeafSourcesAndCredentials(t *testing.T) {
	for _, src := range []mls.LeafNodeSource{mls.LeafNodeSourceKeyPackage, mls.LeafNodeSourceUpdate, mls.LeafNodeSourceCommit} {
		ln := sampleLeaf(src)
		var got mls.LeafNode
		roundTrip(t, "leaf", &ln, &got)
		if got.Source != src {
			t.Errorf("source %d, want %d", got.Source, src)
		}
		tbs := got.TBS([]byte("gid"), 3)
		withContext := src != mls.LeafNodeSourceKeyPackage
		if withContext != bytes.HasSuffix(tbs, []byte{3, 'g', 'i', 'd', 0, 0, 0, 3}) {
			t.Errorf("source %d: group id / leaf index suffix present=%v", src, !withContext)
		}
	}
	creds := []mls.Credential{
		{Type: mls.CredentialBasic, Identity: []byte("bob")},
		{Type: mls.CredentialX509, Certificates: [][]byte{{1, 2}, {3}}},
		{Type: 0xf000, Data: []byte("custom")},
	}
	for _, c := range creds {
		var got mls.Credential
		roundTrip(t, "credential", &c, &got)
		if got.Type != c.Type {
			t.Errorf("credential type %d, want %d", got.Type, c.Type)
		}
	}
}

func TestExtensionAccessors(t *testing.T) {
	dict := mls.AppDataDictionary{Components: []mls.ComponentData{{ComponentID: 1, Data: []byte{0, 2, 0x80, 1}}, {ComponentID: 0x8001, Data: []byte("p")}}}
	rc := mls.RequiredCapabilities{ExtensionTypes: []mls.ExtensionType{0xf2ee}, ProposalTypes: []mls.ProposalType{mls.ProposalSelfRemove}}
	senders := mls.ExternalSenders{{SignatureKey: []byte{1}, Credential: mls.Credential{Type: mls.CredentialBasic, Identity: []byte("ds")}}}
	tree := mls.RatchetTree{{Type: mls.NodeTypeLeaf, Leaf: ptr(sampleLeaf(mls.LeafNodeSourceKeyPackage))}, nil,
		{Type: mls.NodeTypeLeaf, Leaf: ptr(sampleLeaf(mls.LeafNodeSourceCommit))}}
	var exts mls.Extensions
	for _, e := range []struct {
		t mls.ExtensionType
		v mls.Encoder
	}{
		{mls.ExtAppDataDictionary, &dict},
		{mls.ExtRequiredCapabilities, &rc},
		{mls.ExtExternalSenders, senders},
		{mls.ExtExternalPub, &mls.ExternalPub{PublicKey: []byte{7, 7}}},
		{mls.ExtApplicationID, mls.ApplicationID("app")},
		{mls.ExtRatchetTree, tree},
	} {
		x, err := mls.NewExtension(e.t, e.v)
		if err != nil {
			t.Fatal(err)
		}
		exts = append(exts, x)
	}
	exts = append(exts, mls.Extension{Type: mls.ExtLastResort}, mls.Extension{Type: 0xff00, Data: []byte("opaque")})
	var back mls.Extensions
	roundTrip(t, "extensions", exts, &back)

	if d, ok, err := back.AppDataDictionary(); err != nil || !ok || !d.Sorted() || len(d.Components) != 2 {
		t.Errorf("app_data_dictionary: %+v %v %v", d, ok, err)
	} else if v, ok := d.Find(0x8001); !ok || string(v) != "p" {
		t.Errorf("component 0x8001: %q %v", v, ok)
	}
	if got, ok, err := back.RequiredCapabilities(); err != nil || !ok || got.ProposalTypes[0] != mls.ProposalSelfRemove {
		t.Errorf("required_capabilities: %+v %v %v", got, ok, err)
	}
	if got, ok, err := back.ExternalSenders(); err != nil || !ok || string(got[0].Credential.Identity) != "ds" {
		t.Errorf("external_senders: %+v %v %v", got, ok, err)
	}
	if got, ok, err := back.ExternalPub(); err != nil || !ok || !bytes.Equal(got.PublicKey, []byte{7, 7}) {
		t.Errorf("external_pub: %+v %v %v", got, ok, err)
	}
	if got, ok, err := back.ApplicationID(); err != nil || !ok || string(got) != "app" {
		t.Errorf("application_id: %q %v %v", got, ok, err)
	}
	if got, ok, err := back.RatchetTree(); err != nil || !ok || len(got) != 3 || got[1] != nil || got[2].Leaf.Source != mls.LeafNodeSourceCommit {
		t.Errorf("ratchet_tree: %v %v %v", got, ok, err)
	}
	if ok, err := back.LastResort(); err != nil || !ok {
		t.Errorf("last_resort: %v %v", ok, err)
	}
	if x, ok := back.Find(0xff00); !ok || string(x.Data) != "opaque" {
		t.Errorf("unknown extension lost: %+v", x)
	}
	if _, dup := back.Duplicate(); dup {
		t.Error("no duplicate expected")
	}
	if d, dup := append(back, mls.Extension{Type: mls.ExtLastResort}).Duplicate(); !dup || d != mls.ExtLastResort {
		t.Errorf("duplicate not found: %v %v", d, dup)
	}
	if ok, err := (mls.Extensions{{Type: mls.ExtLastResort, Data: []byte{1}}}).LastResort(); !ok || err == nil {
		t.Error("last_resort with data accepted")
	}
	if _, ok, err := (mls.Extensions{{Type: mls.ExtRequiredCapabilities, Data: []byte{1}}}).RequiredCapabilities(); !ok || !errors.Is(err, codec.ErrTruncated) {
		t.Errorf("bad required_capabilities: %v", err)
	}
	if _, ok, err := (mls.Extensions{}).AppDataDictionary(); ok || err != nil {
		t.Error("absent extension reported")
	}
	unsorted := mls.AppDataDictionary{Components: []mls.ComponentData{{ComponentID: 2}, {ComponentID: 2}}}
	if unsorted.Sorted() {
		t.Error("repeated component id reported sorted")
	}
}

func ptr[T any](v T) *T { return &v }

func TestPrivateMessageContent(t *testing.T) {
	pc := mls.PrivateMessageContent{
		Commit:  &mls.Commit{Proposals: []mls.ProposalOrRef{{Type: mls.ProposalOrRefReference, Reference: []byte{1, 2}}}},
		Auth:    mls.FramedContentAuthData{Signature: []byte{5}, ConfirmationTag: []byte{6}},
		Padding: 5,
	}
	var w codec.Writer
	pc.EncodeTo(&w, mls.ContentCommit)
	b := w.Bytes()
	var got mls.PrivateMessageContent
	r := codec.NewReader(b)
	got.DecodeFrom(r, mls.ContentCommit)
	if err := r.Finish(); err != nil || got.Padding != 5 || !bytes.Equal(got.Auth.ConfirmationTag, []byte{6}) {
		t.Fatalf("got %+v, %v", got, err)
	}
	b[len(b)-1] = 1
	r = codec.NewReader(b)
	got.DecodeFrom(r, mls.ContentCommit)
	if !errors.Is(r.Err(), mls.ErrInvalidPadding) {
		t.Fatalf("non-zero padding: %v", r.Err())
	}

	sd := mls.SenderData{LeafIndex: 3, Generation: 9, ReuseGuard: [4]byte{1, 2, 3, 4}}
	var sd2 mls.SenderData
	roundTrip(t, "sender data", &sd, &sd2)
	if sd2 != sd {
		t.Fatalf("sender data %+v", sd2)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		v    mls.Decoder
		want error
	}{
		{"unknown wire format", []byte{0, 1, 0, 9}, new(mls.MLSMessage), mls.ErrInvalidEnum},
		{"bad sender type", []byte{0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}, new(mls.MLSMessage), mls.ErrInvalidEnum},
		{"bad node type", []byte{2, 1, 3}, new(mls.RatchetTree), mls.ErrInvalidEnum},
		{"bad optional", []byte{1, 2}, new(mls.RatchetTree), codec.ErrInvalidOptional},
		{"bad psk type", []byte{0, 4, 3, 0}, new(mls.Proposal), mls.ErrInvalidEnum},
		{"bad app data op", []byte{0, 8, 0, 1, 0}, new(mls.Proposal), mls.ErrInvalidEnum},
		{"bad proposal_or_ref", []byte{1, 0, 0}, new(mls.Commit), mls.ErrInvalidEnum},
		{"private message bad content type", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0}, new(mls.PrivateMessage), mls.ErrInvalidEnum},
		{"huge vector on short input", []byte{0, 1, 0, 3, 0, 1, 0x81, 0, 0, 0, 1}, new(mls.MLSMessage), codec.ErrTruncated},
		{"non-minimal length", []byte{0x40, 0x01, 0xaa}, new(mls.ExternalInit), codec.ErrNonMinimalVarint},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := mls.Unmarshal(tc.in, tc.v); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		v    mls.Encoder
		want error
	}{
		{"add without body", &mls.Proposal{Type: mls.ProposalAdd}, mls.ErrMissingBody},
		{"message without body", &mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatWelcome}, mls.ErrMissingBody},
		{"unknown wire format", &mls.MLSMessage{WireFormat: 77}, mls.ErrInvalidEnum},
		{"bad leaf source", &mls.LeafNode{Source: 9}, mls.ErrInvalidEnum},
		{"node without leaf", &mls.Node{Type: mls.NodeTypeLeaf}, mls.ErrMissingBody},
		{"inline proposal missing", &mls.Commit{Proposals: []mls.ProposalOrRef{{Type: mls.ProposalOrRefProposal}}}, mls.ErrMissingBody},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := mls.Marshal(tc.v); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecodeIntoUsedValue(t *testing.T) {
	x509 := mls.Credential{Type: mls.CredentialX509, Certificates: [][]byte{{1}, {2}}}
	b, err := mls.Marshal(&x509)
	if err != nil {
		t.Fatal(err)
	}
	var c mls.Credential
	for range 2 {
		if err := mls.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.Certificates) != 2 {
		t.Fatalf("second decode kept old state: %d certificates", len(c.Certificates))
	}
	var m mls.MLSMessage
	kp := &mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: &mls.PrivateMessage{ContentType: mls.ContentApplication}}
	m.Welcome = &mls.Welcome{}
	if err := mls.Unmarshal(mustMarshal(t, kp), &m); err != nil {
		t.Fatal(err)
	}
	if m.Welcome != nil {
		t.Fatal("stale Welcome left in a decoded PrivateMessage")
	}
}
