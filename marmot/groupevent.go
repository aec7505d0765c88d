package marmot

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/burrow-relay/burrow/mls"
)

// KindGroupEvent is the Nostr kind of a Marmot group message.
const KindGroupEvent = 445

// The exporter label and context of the kind 445 key, and of the MIP-era
// NIP-44 form (registered in foundation/registries.md; the older pair
// from the MDK 0.6 era).
const (
	groupEventLabel         = "marmot"
	groupEventContext       = "group-event"
	legacyGroupEventLabel   = "nostr"
	legacyGroupEventContext = "nostr"
)

// minGroupEventContent is the shortest decoded content: a 12-byte nonce
// and the 16-byte ChaCha20-Poly1305 tag.
const minGroupEventContent = chacha20poly1305.NonceSize + chacha20poly1305.Overhead

// GroupEventKey derives the kind 445 key of g's current epoch:
// MLS-Exporter("marmot", "group-event", 32).
func GroupEventKey(g *mls.Group) ([]byte, error) {
	k, err := g.Export(groupEventLabel, []byte(groupEventContext), 32)
	if err != nil {
		return nil, fmt.Errorf("marmot: group event key: %w", err)
	}
	return k, nil
}

// LegacyGroupEventSecret derives the MIP-era kind 445 secret of g's current
// epoch, MLS-Exporter("nostr", "nostr", 32), for reading the NIP-44 form.
func LegacyGroupEventSecret(g *mls.Group) ([]byte, error) {
	k, err := g.Export(legacyGroupEventLabel, []byte(legacyGroupEventContext), 32)
	if err != nil {
		return nil, fmt.Errorf("marmot: legacy group event secret: %w", err)
	}
	return k, nil
}

// SealGroupContent encrypts an MLSMessage for a kind 445 content:
// base64(nonce || ChaCha20-Poly1305(key, nonce, message, aad = "")), with a
// fresh 12-byte nonce from random (nil: the system's randomness).
func SealGroupContent(key, mlsMessage []byte, random io.Reader) (string, error) {
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return "", fmt.Errorf("marmot: group event key: %w", err)
	}
	if random == nil {
		random = rand.Reader
	}
	buf := make([]byte, chacha20poly1305.NonceSize, chacha20poly1305.NonceSize+len(mlsMessage)+chacha20poly1305.Overhead)
	if _, err := io.ReadFull(random, buf); err != nil {
		return "", fmt.Errorf("marmot: nonce: %w", err)
	}
	buf = aead.Seal(buf, buf[:chacha20poly1305.NonceSize], mlsMessage, nil)
	return base64.StdEncoding.EncodeToString(buf), nil
}

// OpenGroupContent decodes and decrypts a kind 445 content with one epoch
// key. A content that is not standard padded base64 or shorter than 28
// bytes is ErrGroupEvent; one the key does not open is ErrUndecryptable.
func OpenGroupContent(key []byte, content string) ([]byte, error) {
	raw, err := decodeGroupContent(content)
	if err != nil {
		return nil, err
	}
	return openRaw(key, raw)
}

func decodeGroupContent(content string) ([]byte, error) {
	raw, err := decodeBase64(content)
	if err != nil {
		return nil, fail(ErrGroupEvent, err, "content %v", err)
	}
	if len(raw) < minGroupEventContent {
		return nil, fail(ErrGroupEvent, nil, "content is %d bytes, at least %d needed", len(raw), minGroupEventContent)
	}
	return raw, nil
}

func openRaw(key, raw []byte) ([]byte, error) {
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, fmt.Errorf("marmot: group event key: %w", err)
	}
	n := chacha20poly1305.NonceSize
	out, err := aead.Open(nil, raw[:n], raw[n:], nil)
	if err != nil {
		return nil, fail(ErrUndecryptable, err, "the epoch key does not open the content")
	}
	return out, nil
}

// OpenLegacyGroupContent decrypts the MIP-era NIP-44 form: the exporter
// secret is used as a secp256k1 secret key and the NIP-44 v2 conversation
// key is that of the key with its own public key.
func OpenLegacyGroupContent(secret []byte, content string) ([]byte, error) {
	ck, err := legacyConversationKey(secret)
	if err != nil {
		return nil, err
	}
	pt, err := nip44.Decrypt(content, ck)
	if err != nil {
		return nil, fail(ErrUndecryptable, err, "the legacy epoch secret does not open the content")
	}
	return []byte(pt), nil
}

// SealLegacyGroupContent makes the MIP-era NIP-44 form (for tests and for
// driving MIP-era peers).
func SealLegacyGroupContent(secret, mlsMessage []byte) (string, error) {
	ck, err := legacyConversationKey(secret)
	if err != nil {
		return "", err
	}
	return nip44.Encrypt(string(mlsMessage), ck)
}

func legacyConversationKey(secret []byte) ([32]byte, error) {
	if len(secret) != 32 {
		return [32]byte{}, fmt.Errorf("marmot: legacy secret is %d bytes, want 32", len(secret))
	}
	sk := hex.EncodeToString(secret)
	pub, err := nostr.GetPublicKey(sk)
	if err != nil {
		return [32]byte{}, fmt.Errorf("marmot: legacy secret as a key: %w", err)
	}
	return nip44.GenerateConversationKey(pub, sk)
}

// MessageID is the id a Marmot client deduplicates on: SHA-256 of the
// recovered MLSMessage bytes, never the Nostr event id (which is
// transport evidence only).
func MessageID(mlsMessage []byte) [32]byte { return sha256.Sum256(mlsMessage) }

// GroupEventOptions are the transport choices of one kind 445 event.
type GroupEventOptions struct {
	// Expiration, when set, adds a NIP-40 expiration tag. Only application
	// messages may carry one; NewGroupEvent cannot tell, so the caller
	// (Group) decides.
	Expiration time.Time
	// CreatedAt is the event time; zero means now.
	CreatedAt time.Time
	// Rand supplies the nonce; nil means the system's randomness. The
	// signing key is always fresh from the system.
	Rand io.Reader
}

// NewGroupEvent wraps an MLSMessage in a signed kind 445 event for the
// group whose routing id is nostrGroupID: the content sealed with the
// epoch key, exactly one h tag, an expiration tag when asked, signed by a
// fresh key used for this event only.
func NewGroupEvent(key []byte, nostrGroupID [32]byte, mlsMessage []byte, opts GroupEventOptions) (*nostr.Event, error) {
	content, err := SealGroupContent(key, mlsMessage, opts.Rand)
	if err != nil {
		return nil, err
	}
	created := opts.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	ev := &nostr.Event{
		CreatedAt: nostr.Timestamp(created.Unix()),
		Kind:      KindGroupEvent,
		Tags:      nostr.Tags{{"h", hex.EncodeToString(nostrGroupID[:])}},
		Content:   content,
	}
	if !opts.Expiration.IsZero() {
		ev.Tags = append(ev.Tags, nostr.Tag{"expiration", strconv.FormatInt(opts.Expiration.Unix(), 10)})
	}
	sk, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("marmot: event key: %w", err)
	}
	if err := ev.Sign(hex.EncodeToString(sk.Serialize())); err != nil {
		return nil, fmt.Errorf("marmot: sign the group event: %w", err)
	}
	sk.Zero()
	return ev, nil
}

// CheckGroupEvent applies the kind 445 envelope rules before any
// decryption: kind 445, exactly one h tag with exactly one value (64
// lowercase hex characters), no tag but h and one NIP-40 expiration with
// one integer value, and content that is standard padded base64 of at least
// 28 bytes. It returns the routing id and the decoded content. It does not
// check the event id and signature (VerifyEvent does).
func CheckGroupEvent(ev *nostr.Event) (nostrGroupID [32]byte, raw []byte, err error) {
	if ev.Kind != KindGroupEvent {
		return nostrGroupID, nil, fail(ErrGroupEvent, nil, "kind %d, want 445", ev.Kind)
	}
	var h, exp int
	for _, t := range ev.Tags {
		switch {
		case len(t) == 0:
			return nostrGroupID, nil, fail(ErrGroupEvent, nil, "empty tag")
		case t[0] == "h":
			h++
			if len(t) != 2 || len(t[1]) != 64 || !isLowerHex(t[1]) {
				return nostrGroupID, nil, fail(ErrGroupEvent, nil, "h tag must hold exactly one value of 64 lowercase hex characters")
			}
			_, _ = hex.Decode(nostrGroupID[:], []byte(t[1]))
		case t[0] == "expiration":
			exp++
			if len(t) != 2 {
				return nostrGroupID, nil, fail(ErrGroupEvent, nil, "expiration tag must hold exactly one value")
			}
			if _, err := strconv.ParseUint(t[1], 10, 63); err != nil {
				return nostrGroupID, nil, fail(ErrGroupEvent, nil, "expiration %s is not a Unix time", quote(t[1]))
			}
		default:
			return nostrGroupID, nil, fail(ErrGroupEvent, nil, "tag %s not allowed on kind 445 (only h and expiration)", quote(t[0]))
		}
	}
	switch {
	case h != 1:
		return nostrGroupID, nil, fail(ErrGroupEvent, nil, "%d h tags, want exactly one", h)
	case exp > 1:
		return nostrGroupID, nil, fail(ErrGroupEvent, nil, "%d expiration tags, want at most one", exp)
	}
	raw, err = decodeGroupContent(ev.Content)
	return nostrGroupID, raw, err
}

// VerifyEvent checks a signed event's id and signature, which every
// receiver must do before trusting any of its fields.
func VerifyEvent(ev *nostr.Event) error {
	if !ev.CheckID() {
		return fail(ErrGroupEvent, nil, "event id does not match its content")
	}
	if ok, err := ev.CheckSignature(); !ok {
		return fail(ErrGroupEvent, err, "event signature does not verify")
	}
	return nil
}

// OpenGroupEvent checks a kind 445 event's envelope, id and signature and
// decrypts it with the first of keys that opens it (trial decryption over
// the retained epochs, as the transport says: the envelope carries no
// epoch). It returns the MLSMessage bytes and the index of the key.
func OpenGroupEvent(ev *nostr.Event, keys [][]byte) (mlsMessage []byte, index int, err error) {
	_, raw, err := CheckGroupEvent(ev)
	if err != nil {
		return nil, -1, err
	}
	if err := VerifyEvent(ev); err != nil {
		return nil, -1, err
	}
	for i, k := range keys {
		if msg, err := openRaw(k, raw); err == nil {
			return msg, i, nil
		}
	}
	return nil, -1, fail(ErrUndecryptable, nil, "none of %d retained epoch keys opens the content", len(keys))
}
