package mls

import (
	"errors"
	"fmt"
	"io"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/codec"
	"github.com/burrow-relay/burrow/mls/secrettree"
)

// Errors reported by message protection; match with errors.Is.
var (
	// ErrMembershipTag means a PublicMessage's membership tag is missing or
	// does not verify.
	ErrMembershipTag = errors.New("mls: membership tag does not verify")
	// ErrSenderData means a PrivateMessage's sender data cannot be opened
	// or names a sender outside the tree.
	ErrSenderData = errors.New("mls: invalid sender data")
	// ErrNotMember means a PrivateMessage was asked to carry content from a
	// sender that is not a member.
	ErrNotMember = errors.New("mls: PrivateMessage sender must be a member")
)

// SignContent signs content as sent with wire format wf (RFC 9420 section
// 6.1). ctx is the current GroupContext; it is required for member and
// new-member-commit senders.
func SignContent(suite *cipher.Suite, signer *cipher.SignatureKey, wf WireFormat, content *FramedContent, ctx *GroupContext) ([]byte, error) {
	tbs, err := FramedContentTBS(wf, content, ctx)
	if err != nil {
		return nil, err
	}
	return suite.SignWithLabel(signer, LabelFramedContentTBS, tbs)
}

// VerifyContentSignature checks the signature of content sent with wire
// format wf against the sender's public signature key.
func VerifyContentSignature(suite *cipher.Suite, signerKey []byte, wf WireFormat, content *FramedContent, signature []byte, ctx *GroupContext) error {
	tbs, err := FramedContentTBS(wf, content, ctx)
	if err != nil {
		return err
	}
	if err := suite.VerifyWithLabel(signerKey, LabelFramedContentTBS, tbs, signature); err != nil {
		return fmt.Errorf("mls: content signature: %w", err)
	}
	return nil
}

// authenticatedContentTBM encodes AuthenticatedContentTBM: the
// FramedContentTBS of a public message followed by its auth data.
func authenticatedContentTBM(m *PublicMessage, ctx *GroupContext) ([]byte, error) {
	tbs, err := FramedContentTBS(WireFormatPublicMessage, &m.Content, ctx)
	if err != nil {
		return nil, err
	}
	w := codec.Writer{}
	w.Fixed(tbs)
	m.Auth.EncodeTo(&w, m.Content.ContentType)
	if err := w.Err(); err != nil {
		return nil, err
	}
	return w.Bytes(), nil
}

// MembershipTag computes the membership tag of a PublicMessage from a
// member: MAC(membership_key, AuthenticatedContentTBM) (RFC 9420 section
// 6.2).
func MembershipTag(suite *cipher.Suite, membershipKey []byte, m *PublicMessage, ctx *GroupContext) ([]byte, error) {
	tbm, err := authenticatedContentTBM(m, ctx)
	if err != nil {
		return nil, err
	}
	return suite.MAC(membershipKey, tbm), nil
}

// VerifyMembershipTag checks the membership tag of a PublicMessage sent by
// a member.
func VerifyMembershipTag(suite *cipher.Suite, membershipKey []byte, m *PublicMessage, ctx *GroupContext) error {
	if m.Content.Sender.Type != SenderMember {
		return nil // only members' messages carry a tag
	}
	tbm, err := authenticatedContentTBM(m, ctx)
	if err != nil {
		return err
	}
	if !suite.VerifyMAC(membershipKey, tbm, m.MembershipTag) {
		return ErrMembershipTag
	}
	return nil
}

func ratchetFor(ct ContentType) secrettree.RatchetType {
	if ct == ContentApplication {
		return secrettree.Application
	}
	return secrettree.Handshake
}

func privateContentAAD(groupID []byte, epoch uint64, ct ContentType, authenticatedData []byte) []byte {
	var w codec.Writer
	w.Opaque(groupID)
	w.U64(epoch)
	w.U8(uint8(ct))
	w.Opaque(authenticatedData)
	return w.Bytes()
}

func senderDataAAD(groupID []byte, epoch uint64, ct ContentType) []byte {
	var w codec.Writer
	w.Opaque(groupID)
	w.U64(epoch)
	w.U8(uint8(ct))
	return w.Bytes()
}

// EncryptPrivateMessage protects content (from a member) and its auth data
// as a PrivateMessage (RFC 9420 section 6.3), taking the next generation of
// the sender's ratchet in st and adding padding zero bytes. The reuse guard
// comes from random (nil: the system's randomness).
func EncryptPrivateMessage(suite *cipher.Suite, st *secrettree.Tree, senderDataSecret []byte, content *FramedContent, auth *FramedContentAuthData, padding int, random io.Reader) (*PrivateMessage, error) {
	if content.Sender.Type != SenderMember {
		return nil, ErrNotMember
	}
	var w codec.Writer
	pc := PrivateMessageContent{ApplicationData: content.ApplicationData, Proposal: content.Proposal, Commit: content.Commit, Auth: *auth, Padding: padding}
	pc.EncodeTo(&w, content.ContentType)
	if err := w.Err(); err != nil {
		return nil, fmt.Errorf("mls: private content: %w", err)
	}
	g, err := randomSecret(random, 4)
	if err != nil {
		return nil, err
	}
	guard := [4]byte(g)
	aad := privateContentAAD(content.GroupID, content.Epoch, content.ContentType, content.AuthenticatedData)
	gen, ct, err := st.Seal(content.Sender.Index, ratchetFor(content.ContentType), guard, aad, w.Bytes())
	if err != nil {
		return nil, fmt.Errorf("mls: encrypt content: %w", err)
	}
	sd := SenderData{LeafIndex: content.Sender.Index, Generation: gen, ReuseGuard: guard}
	sdBytes, err := Marshal(&sd)
	if err != nil {
		return nil, err
	}
	key, nonce, err := secrettree.SenderDataKeyNonce(suite, senderDataSecret, ct)
	if err != nil {
		return nil, err
	}
	defer key.Zero()
	esd, err := suite.AEADSeal(nil, key, nonce, senderDataAAD(content.GroupID, content.Epoch, content.ContentType), sdBytes)
	if err != nil {
		return nil, fmt.Errorf("mls: encrypt sender data: %w", err)
	}
	return &PrivateMessage{
		GroupID: content.GroupID, Epoch: content.Epoch, ContentType: content.ContentType,
		AuthenticatedData: content.AuthenticatedData, EncryptedSenderData: esd, Ciphertext: ct,
	}, nil
}

// OpenSenderData decrypts a PrivateMessage's sender data with the epoch's
// sender_data_secret (RFC 9420 section 6.3.2). It reads no ratchet, so it
// changes nothing; the leaf index is checked against leafCount.
func OpenSenderData(suite *cipher.Suite, senderDataSecret []byte, m *PrivateMessage, leafCount uint32) (SenderData, error) {
	key, nonce, err := secrettree.SenderDataKeyNonce(suite, senderDataSecret, m.Ciphertext)
	if err != nil {
		return SenderData{}, err
	}
	defer key.Zero()
	sdBytes, err := suite.AEADOpen(nil, key, nonce, senderDataAAD(m.GroupID, m.Epoch, m.ContentType), m.EncryptedSenderData)
	if err != nil {
		return SenderData{}, fmt.Errorf("%w: %w", ErrSenderData, err)
	}
	var sd SenderData
	if err := Unmarshal(sdBytes, &sd); err != nil {
		return SenderData{}, fmt.Errorf("%w: %w", ErrSenderData, err)
	}
	if sd.LeafIndex >= leafCount {
		return SenderData{}, fmt.Errorf("%w: leaf %d outside the tree", ErrSenderData, sd.LeafIndex)
	}
	return sd, nil
}

// openContent decrypts a PrivateMessage's content for the sender named in
// sd on a tentative ratchet: the returned attempt must be committed once
// the message is accepted, or discarded. When decryption fails nothing
// has changed.
func openContent(st *secrettree.Tree, m *PrivateMessage, sd SenderData) (*FramedContent, *FramedContentAuthData, *secrettree.Attempt, error) {
	aad := privateContentAAD(m.GroupID, m.Epoch, m.ContentType, m.AuthenticatedData)
	pt, attempt, err := st.OpenAttempt(sd.LeafIndex, ratchetFor(m.ContentType), sd.Generation, sd.ReuseGuard, aad, m.Ciphertext)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("mls: decrypt content: %w", err)
	}
	var pc PrivateMessageContent
	r := codec.NewReader(pt)
	pc.DecodeFrom(r, m.ContentType)
	if err := r.Finish(); err != nil {
		attempt.Discard()
		return nil, nil, nil, fmt.Errorf("mls: private content: %w", err)
	}
	content := &FramedContent{
		GroupID: m.GroupID, Epoch: m.Epoch, Sender: Sender{Type: SenderMember, Index: sd.LeafIndex},
		AuthenticatedData: m.AuthenticatedData, ContentType: m.ContentType,
		ApplicationData: pc.ApplicationData, Proposal: pc.Proposal, Commit: pc.Commit,
	}
	return content, &pc.Auth, attempt, nil
}

// DecryptPrivateMessage opens a PrivateMessage with the epoch's secret tree
// and sender_data_secret and returns the FramedContent (sender: the member
// named in the sender data) and its auth data. The generation's key is
// consumed only if the content decrypts. The caller checks the signature
// (with wire format PrivateMessage) and that group id and epoch are the
// group's.
func DecryptPrivateMessage(suite *cipher.Suite, st *secrettree.Tree, senderDataSecret []byte, m *PrivateMessage) (*FramedContent, *FramedContentAuthData, error) {
	sd, err := OpenSenderData(suite, senderDataSecret, m, st.LeafCount())
	if err != nil {
		return nil, nil, err
	}
	c, auth, attempt, err := openContent(st, m, sd)
	if err != nil {
		return nil, nil, err
	}
	attempt.Commit()
	return c, auth, nil
}
