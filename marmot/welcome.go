package marmot

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip59"

	"github.com/burrow-relay/burrow/mls"
)

// Kinds of the Welcome path (NIP-59 and transports/nostr.md).
const (
	KindWelcome  = 444
	KindSeal     = 13
	KindGiftWrap = 1059
)

// WelcomeRumor is a kind 444 rumor's content, read and checked.
type WelcomeRumor struct {
	// Inviter is the rumor's author, which is the seal's signer.
	Inviter Pubkey
	// KeyPackageEvent is the e tag: the id of the KeyPackage event the
	// inviter says it used (a claim, checked against the KeyPackage).
	KeyPackageEvent string
	// Relays is the relays tag: where to read the group's events.
	Relays []string
	// Welcome is the MLSMessage (wire format mls_welcome).
	Welcome   []byte
	CreatedAt int64
}

// NewWelcomeRumor makes the unsigned kind 444 rumor for one invitee:
// content base64 of the MLSMessage Welcome, exactly one e tag (the
// consumed KeyPackage event) and exactly one relays tag.
func NewWelcomeRumor(inviter Pubkey, welcome []byte, keyPackageEvent string, relays []string, createdAt time.Time) (nostr.Event, error) {
	if len(keyPackageEvent) != 64 || !isLowerHex(keyPackageEvent) {
		return nostr.Event{}, fail(ErrWelcome, nil, "KeyPackage event id %s is not 64 lowercase hex characters", quote(keyPackageEvent))
	}
	if len(relays) == 0 {
		return nostr.Event{}, fail(ErrWelcome, nil, "no relays for the relays tag")
	}
	for _, r := range relays {
		if err := CheckRelayURL(r); err != nil {
			return nostr.Event{}, err
		}
	}
	if m, err := mls.DecodeMLSMessage(welcome); err != nil || m.WireFormat != mls.WireFormatWelcome {
		return nostr.Event{}, fail(ErrWelcome, err, "content is not an MLSMessage Welcome")
	}
	ev := nostr.Event{
		PubKey:    inviter.Hex(),
		CreatedAt: nostr.Timestamp(createdAt.Unix()),
		Kind:      KindWelcome,
		Tags:      nostr.Tags{{"e", keyPackageEvent}, append(nostr.Tag{"relays"}, relays...)},
		Content:   base64.StdEncoding.EncodeToString(welcome),
	}
	ev.ID = ev.GetID()
	return ev, nil
}

// ParseWelcomeRumor checks a kind 444 rumor's JSON: the strict unsigned
// event shape (no sig), kind 444, exactly one e tag with one lowercase-hex
// event id, exactly one relays tag with one or more relay URLs, and content
// that is base64 of an MLSMessage Welcome.
func ParseWelcomeRumor(raw []byte) (*WelcomeRumor, error) {
	e, err := parseUnsigned(raw, ErrWelcome)
	if err != nil {
		return nil, err
	}
	if e.Kind != KindWelcome {
		return nil, fail(ErrWelcome, nil, "rumor kind %d, want 444", e.Kind)
	}
	w := &WelcomeRumor{CreatedAt: e.CreatedAt}
	w.Inviter, _ = ParsePubkey(e.PubKey) // checked by parseUnsigned
	var es, rs int
	for _, t := range e.Tags {
		if len(t) == 0 {
			continue
		}
		switch t[0] {
		case "e":
			es++
			if len(t) != 2 || len(t[1]) != 64 || !isLowerHex(t[1]) {
				return nil, fail(ErrWelcome, nil, "e tag must hold exactly one lowercase-hex event id")
			}
			w.KeyPackageEvent = t[1]
		case "relays":
			rs++
			if len(t) < 2 {
				return nil, fail(ErrWelcome, nil, "relays tag has no relay")
			}
			for _, r := range t[1:] {
				if err := CheckRelayURL(r); err != nil {
					return nil, fail(ErrWelcome, err, "relays tag: %v", err)
				}
			}
			w.Relays = append([]string(nil), t[1:]...)
		}
	}
	if es != 1 || rs != 1 {
		return nil, fail(ErrWelcome, nil, "%d e and %d relays tags, want exactly one of each", es, rs)
	}
	w.Welcome, err = decodeBase64(e.Content)
	if err != nil {
		return nil, fail(ErrWelcome, err, "content %v", err)
	}
	if m, err := mls.DecodeMLSMessage(w.Welcome); err != nil || m.WireFormat != mls.WireFormatWelcome {
		return nil, fail(ErrWelcome, err, "content is not an MLSMessage Welcome")
	}
	return w, nil
}

// WrapOptions are the transport choices of a gift wrap.
type WrapOptions struct {
	// Expiration, when set, puts a NIP-40 expiration tag on the gift wrap.
	Expiration time.Time
}

// WrapWelcome seals rumor (kind 13, signed by the inviter) and gift-wraps
// it (kind 1059, a one-time key, p = the recipient) with go-nostr's nip59.
func WrapWelcome(inviter Signer, rumor nostr.Event, recipient Pubkey, opts WrapOptions) (*nostr.Event, error) {
	if rumor.PubKey != inviter.PublicKey().Hex() {
		return nil, fail(ErrWelcome, nil, "rumor author is not the inviter")
	}
	var modify func(*nostr.Event)
	if !opts.Expiration.IsZero() {
		modify = func(gw *nostr.Event) {
			gw.Tags = append(gw.Tags, nostr.Tag{"expiration", strconv.FormatInt(opts.Expiration.Unix(), 10)})
		}
	}
	to := recipient.Hex()
	gw, err := nip59.GiftWrap(rumor, to,
		func(plaintext string) (string, error) { return inviter.Encrypt(plaintext, to) },
		inviter.SignEvent, modify)
	if err != nil {
		// NIP-44 carries at most 65,535 bytes per layer, and the seal
		// nests the encrypted rumor, so large groups' Welcomes do not fit.
		return nil, fail(ErrWelcome, err, "gift wrap of a %d-byte rumor: %v", len(rumor.String()), err)
	}
	return &gw, nil
}

// UnwrapWelcome opens a kind 1059 gift wrap addressed to me and returns its
// Welcome rumor, checking each layer: the gift wrap's id and signature and
// its single p tag naming me; the seal is kind 13 with no tags, signed by
// the rumor's author; the rumor is a valid kind 444 (ParseWelcomeRumor).
// Nothing else changes; the caller then joins with Join.
func UnwrapWelcome(gw *nostr.Event, me Signer) (*WelcomeRumor, error) {
	if gw.Kind != KindGiftWrap {
		return nil, fail(ErrWelcome, nil, "kind %d, want 1059", gw.Kind)
	}
	var ps []string
	for _, t := range gw.Tags {
		if len(t) > 0 && t[0] == "p" {
			if len(t) != 2 {
				return nil, fail(ErrWelcome, nil, "p tag must hold exactly one value")
			}
			ps = append(ps, t[1])
		}
	}
	if len(ps) != 1 {
		return nil, fail(ErrWelcome, nil, "%d p tags, want exactly one", len(ps))
	}
	if ps[0] != me.PublicKey().Hex() {
		return nil, fail(ErrWrongRecipient, nil, "gift wrap is for %s", quote(ps[0]))
	}
	if !gw.CheckID() {
		return nil, fail(ErrWelcome, nil, "gift wrap id does not match its content")
	}
	if ok, err := gw.CheckSignature(); !ok {
		return nil, fail(ErrWelcome, err, "gift wrap signature does not verify")
	}
	var layers []string
	_, err := nip59.GiftUnwrap(*gw, func(peer, ciphertext string) (string, error) {
		pt, err := me.Decrypt(ciphertext, peer)
		if err == nil {
			layers = append(layers, pt)
		}
		return pt, err
	})
	if err != nil {
		return nil, fail(ErrWelcome, err, "unwrap: %v", err)
	}
	if len(layers) != 2 {
		return nil, fail(ErrWelcome, nil, "unwrap opened %d layers, want 2", len(layers))
	}
	var seal struct {
		PubKey string     `json:"pubkey"`
		Kind   int        `json:"kind"`
		Tags   nostr.Tags `json:"tags"`
	}
	if err := json.Unmarshal([]byte(layers[0]), &seal); err != nil {
		return nil, fail(ErrWelcome, err, "seal is not JSON")
	}
	if seal.Kind != KindSeal || len(seal.Tags) != 0 {
		return nil, fail(ErrWelcome, nil, "seal is kind %d with %d tags, want kind 13 with none", seal.Kind, len(seal.Tags))
	}
	w, err := ParseWelcomeRumor([]byte(layers[1]))
	if err != nil {
		return nil, err
	}
	if w.Inviter.Hex() != seal.PubKey {
		return nil, fail(ErrWelcome, nil, "rumor author is not the seal's signer")
	}
	return w, nil
}
