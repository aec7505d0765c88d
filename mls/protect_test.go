package mls_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
	"github.com/burrow-relay/burrow/mls/secrettree"
)

type messageProtectionCase struct {
	CipherSuite             vectortest.Uint `json:"cipher_suite"`
	GroupID                 vectortest.Hex  `json:"group_id"`
	Epoch                   vectortest.Uint `json:"epoch"`
	TreeHash                vectortest.Hex  `json:"tree_hash"`
	ConfirmedTranscriptHash vectortest.Hex  `json:"confirmed_transcript_hash"`
	SignaturePriv           vectortest.Hex  `json:"signature_priv"`
	SignaturePub            vectortest.Hex  `json:"signature_pub"`
	EncryptionSecret        vectortest.Hex  `json:"encryption_secret"`
	SenderDataSecret        vectortest.Hex  `json:"sender_data_secret"`
	MembershipKey           vectortest.Hex  `json:"membership_key"`
	Proposal                vectortest.Hex  `json:"proposal"`
	ProposalPriv            vectortest.Hex  `json:"proposal_priv"`
	ProposalPub             vectortest.Hex  `json:"proposal_pub"`
	Commit                  vectortest.Hex  `json:"commit"`
	CommitPriv              vectortest.Hex  `json:"commit_priv"`
	CommitPub               vectortest.Hex  `json:"commit_pub"`
	Application             vectortest.Hex  `json:"application"`
	ApplicationPriv         vectortest.Hex  `json:"application_priv"`
}

// TestMessageProtectionVectors unprotects the file's Public and Private
// messages (proposal, commit, application from leaf 1 of a 2-member group),
// then protects the same content itself and unprotects the result.
func TestMessageProtectionVectors(t *testing.T) {
	var cases []messageProtectionCase
	vectortest.Load(t, "message-protection.json", &cases)
	count := vectortest.NewCounter("message-protection.json")
	for i, tc := range cases {
		cs := uint64(tc.CipherSuite)
		suite, ok := countedSuite(t, count, cs)
		if !ok {
			continue
		}
		t.Run(fmt.Sprintf("%d_suite%d", i, cs), func(t *testing.T) { runMessageProtection(t, suite, &tc) })
	}
	count.Check(t, len(cases))
}

func runMessageProtection(t *testing.T, suite *cipher.Suite, tc *messageProtectionCase) {
	ctx := &mls.GroupContext{Version: mls.MLS10, CipherSuite: mls.CipherSuite(tc.CipherSuite), GroupID: tc.GroupID,
		Epoch: uint64(tc.Epoch), TreeHash: tc.TreeHash, ConfirmedTranscriptHash: tc.ConfirmedTranscriptHash}
	signer, err := suite.ParseSignatureKey(tc.SignaturePriv)
	if err != nil {
		t.Fatal(err)
	}
	newTree := func() *secrettree.Tree {
		st, err := secrettree.New(suite, tc.EncryptionSecret, 2, secrettree.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	// contentBytes encodes the body of content for comparison with the
	// vector's bare proposal, commit or application data.
	contentBytes := func(c *mls.FramedContent) []byte {
		switch c.ContentType {
		case mls.ContentProposal:
			return mustMarshal(t, c.Proposal)
		case mls.ContentCommit:
			return mustMarshal(t, c.Commit)
		}
		return c.ApplicationData
	}
	kinds := []struct {
		name     string
		ct       mls.ContentType
		body     []byte
		pub, prv []byte
	}{
		{"proposal", mls.ContentProposal, tc.Proposal, tc.ProposalPub, tc.ProposalPriv},
		{"commit", mls.ContentCommit, tc.Commit, tc.CommitPub, tc.CommitPriv},
		{"application", mls.ContentApplication, tc.Application, nil, tc.ApplicationPriv},
	}
	for _, k := range kinds {
		// The vector's PublicMessage.
		if k.pub != nil {
			m, err := mls.DecodeMLSMessage(k.pub)
			if err != nil || m.PublicMessage == nil {
				t.Fatalf("%s pub: %v", k.name, err)
			}
			pm := m.PublicMessage
			if pm.Content.ContentType != k.ct || !bytes.Equal(contentBytes(&pm.Content), k.body) {
				t.Errorf("%s pub: content differs", k.name)
			}
			if err := mls.VerifyContentSignature(suite, tc.SignaturePub, mls.WireFormatPublicMessage, &pm.Content, pm.Auth.Signature, ctx); err != nil {
				t.Errorf("%s pub: %v", k.name, err)
			}
			if err := mls.VerifyMembershipTag(suite, tc.MembershipKey, pm, ctx); err != nil {
				t.Errorf("%s pub: %v", k.name, err)
			}
			pm.MembershipTag = append([]byte{}, pm.MembershipTag...)
			pm.MembershipTag[0] ^= 1
			if err := mls.VerifyMembershipTag(suite, tc.MembershipKey, pm, ctx); !errors.Is(err, mls.ErrMembershipTag) {
				t.Errorf("%s pub: altered membership tag: %v", k.name, err)
			}
		}
		// The vector's PrivateMessage.
		m, err := mls.DecodeMLSMessage(k.prv)
		if err != nil || m.PrivateMessage == nil {
			t.Fatalf("%s priv: %v", k.name, err)
		}
		// Each message of the file is generation 0 of its ratchet, so each
		// is read with a fresh secret tree.
		content, auth, err := mls.DecryptPrivateMessage(suite, newTree(), tc.SenderDataSecret, m.PrivateMessage)
		if err != nil {
			t.Fatalf("%s priv: %v", k.name, err)
		}
		if content.Sender.Index != 1 || content.ContentType != k.ct || !bytes.Equal(contentBytes(content), k.body) {
			t.Errorf("%s priv: content differs (sender %d)", k.name, content.Sender.Index)
		}
		if err := mls.VerifyContentSignature(suite, tc.SignaturePub, mls.WireFormatPrivateMessage, content, auth.Signature, ctx); err != nil {
			t.Errorf("%s priv: %v", k.name, err)
		}

		// Protect the same content ourselves, both ways, and read it back.
		own := &mls.FramedContent{GroupID: tc.GroupID, Epoch: uint64(tc.Epoch), Sender: mls.Sender{Type: mls.SenderMember, Index: 1},
			ContentType: k.ct, ApplicationData: content.ApplicationData, Proposal: content.Proposal, Commit: content.Commit}
		for _, wf := range []mls.WireFormat{mls.WireFormatPublicMessage, mls.WireFormatPrivateMessage} {
			if wf == mls.WireFormatPublicMessage && k.ct == mls.ContentApplication {
				continue // application data is never sent as a PublicMessage
			}
			sig, err := mls.SignContent(suite, signer, wf, own, ctx)
			if err != nil {
				t.Fatal(err)
			}
			ownAuth := mls.FramedContentAuthData{Signature: sig, ConfirmationTag: auth.ConfirmationTag}
			var wire []byte
			if wf == mls.WireFormatPublicMessage {
				pm := &mls.PublicMessage{Content: *own, Auth: ownAuth}
				if pm.MembershipTag, err = mls.MembershipTag(suite, tc.MembershipKey, pm, ctx); err != nil {
					t.Fatal(err)
				}
				wire = mustMarshal(t, &mls.MLSMessage{Version: mls.MLS10, WireFormat: wf, PublicMessage: pm})
			} else {
				pm, err := mls.EncryptPrivateMessage(suite, newTree(), tc.SenderDataSecret, own, &ownAuth, 7, nil)
				if err != nil {
					t.Fatal(err)
				}
				wire = mustMarshal(t, &mls.MLSMessage{Version: mls.MLS10, WireFormat: wf, PrivateMessage: pm})
			}
			back, err := mls.DecodeMLSMessage(wire)
			if err != nil {
				t.Fatal(err)
			}
			var got *mls.FramedContent
			var gotAuth *mls.FramedContentAuthData
			if back.PublicMessage != nil {
				got, gotAuth = &back.PublicMessage.Content, &back.PublicMessage.Auth
				if err := mls.VerifyMembershipTag(suite, tc.MembershipKey, back.PublicMessage, ctx); err != nil {
					t.Errorf("%s own pub: %v", k.name, err)
				}
			} else if got, gotAuth, err = mls.DecryptPrivateMessage(suite, newTree(), tc.SenderDataSecret, back.PrivateMessage); err != nil {
				t.Fatalf("%s own priv: %v", k.name, err)
			}
			if !bytes.Equal(contentBytes(got), k.body) || !bytes.Equal(gotAuth.ConfirmationTag, auth.ConfirmationTag) {
				t.Errorf("%s own (wire format %d): content differs", k.name, wf)
			}
			if err := mls.VerifyContentSignature(suite, tc.SignaturePub, wf, got, gotAuth.Signature, ctx); err != nil {
				t.Errorf("%s own (wire format %d): %v", k.name, wf, err)
			}
		}
	}
}

func TestDecryptPrivateMessageRejects(t *testing.T) {
	var cases []messageProtectionCase
	vectortest.Load(t, "message-protection.json", &cases)
	tc := cases[0]
	suite, err := cipher.New(cipher.CipherSuite(tc.CipherSuite))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		alter func(m *mls.PrivateMessage)
		want  error
	}{
		{"sender data", func(m *mls.PrivateMessage) { m.EncryptedSenderData = flip(m.EncryptedSenderData) }, mls.ErrSenderData},
		{"epoch", func(m *mls.PrivateMessage) { m.Epoch++ }, mls.ErrSenderData},
		{"ciphertext", func(m *mls.PrivateMessage) {
			// Changing the first Nh bytes would also change the sender
			// data key; change the last byte (the AEAD tag) instead.
			m.Ciphertext = append([]byte{}, m.Ciphertext...)
			m.Ciphertext[len(m.Ciphertext)-1] ^= 1
		}, cipher.ErrDecrypt},
		{"authenticated data", func(m *mls.PrivateMessage) { m.AuthenticatedData = []byte("x") }, cipher.ErrDecrypt},
	}
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			m, err := mls.DecodeMLSMessage(tc.ApplicationPriv)
			if err != nil {
				t.Fatal(err)
			}
			c.alter(m.PrivateMessage)
			st, err := secrettree.New(suite, tc.EncryptionSecret, 2, secrettree.Config{})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := mls.DecryptPrivateMessage(suite, st, tc.SenderDataSecret, m.PrivateMessage); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func flip(b []byte) []byte {
	out := append([]byte{}, b...)
	out[0] ^= 1
	return out
}
