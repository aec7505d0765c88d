package marmot

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"
	"golang.org/x/crypto/chacha20poly1305"
)

// TestGroupEventContent checks the kind 445 content against an
// independent computation of the spec's formula:
// base64(nonce || ChaCha20-Poly1305(key, nonce, message, aad = "")).
func TestGroupEventContent(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	nonce := bytes.Repeat([]byte{0x07}, 12)
	msg := []byte("an MLSMessage")
	content, err := SealGroupContent(key, msg, bytes.NewReader(nonce))
	if err != nil {
		t.Fatal(err)
	}
	aead, _ := chacha20poly1305.New(key)
	want := base64.StdEncoding.EncodeToString(append(bytes.Clone(nonce), aead.Seal(nil, nonce, msg, nil)...))
	if content != want {
		t.Fatalf("content %s, want %s", content, want)
	}
	got, err := OpenGroupContent(key, content)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("open: %q %v", got, err)
	}
	other := bytes.Repeat([]byte{0x43}, 32)
	if _, err := OpenGroupContent(other, content); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("other key: %v", err)
	}
	raw, _ := base64.StdEncoding.DecodeString(content)
	for name, c := range map[string]string{
		"27 bytes":       base64.StdEncoding.EncodeToString(raw[:27]),
		"url-safe":       strings.NewReplacer("+", "-", "/", "_").Replace(content) + "-_",
		"unpadded":       base64.RawStdEncoding.EncodeToString(raw[:29]),
		"line break":     content[:8] + "\n" + content[8:],
		"not base64":     "%%%%",
		"flipped tag":    base64.StdEncoding.EncodeToString(flipByte(raw, len(raw)-1)),
		"flipped nonce":  base64.StdEncoding.EncodeToString(flipByte(raw, 0)),
		"flipped cipher": base64.StdEncoding.EncodeToString(flipByte(raw, 13)),
	} {
		_, err := OpenGroupContent(key, c)
		if !errors.Is(err, ErrGroupEvent) && !errors.Is(err, ErrUndecryptable) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func flipByte(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func TestGroupEventEnvelope(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	h := [32]byte{0xab, 0xcd}
	exp := time.Unix(1_900_000_000, 0)
	a, err := NewGroupEvent(key, h, []byte("m1"), GroupEventOptions{Expiration: exp})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewGroupEvent(key, h, []byte("m1"), GroupEventOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Exactly h (and expiration only when asked), a fresh key per event.
	if !tagsEqual(a.Tags, nostr.Tags{{"h", hex.EncodeToString(h[:])}, {"expiration", "1900000000"}}) || !tagsEqual(b.Tags, nostr.Tags{{"h", hex.EncodeToString(h[:])}}) {
		t.Fatalf("tags %v / %v", a.Tags, b.Tags)
	}
	if a.PubKey == b.PubKey || a.Content == b.Content || a.Kind != 445 {
		t.Fatal("two events share a signing key or a nonce")
	}
	msg, i, err := OpenGroupEvent(a, [][]byte{bytes.Repeat([]byte{2}, 32), key})
	if err != nil || i != 1 || string(msg) != "m1" {
		t.Fatalf("open: %q %d %v", msg, i, err)
	}
	edit := func(f func(*nostr.Event), resign bool) *nostr.Event {
		c := *b
		c.Tags = append(nostr.Tags(nil), b.Tags...)
		f(&c)
		if resign {
			_ = c.Sign(hex.EncodeToString(bytes.Repeat([]byte{3}, 32)))
		}
		return &c
	}
	for _, tc := range []struct {
		name string
		ev   *nostr.Event
		want error
	}{
		{"kind 1", edit(func(e *nostr.Event) { e.Kind = 1 }, true), ErrGroupEvent},
		{"no h", edit(func(e *nostr.Event) { e.Tags = nil }, true), ErrGroupEvent},
		{"two h", edit(func(e *nostr.Event) { e.Tags = append(e.Tags, e.Tags[0]) }, true), ErrGroupEvent},
		{"h uppercase", edit(func(e *nostr.Event) { e.Tags = nostr.Tags{{"h", strings.ToUpper(e.Tags[0][1])}} }, true), ErrGroupEvent},
		{"h with two values", edit(func(e *nostr.Event) { e.Tags = nostr.Tags{{"h", e.Tags[0][1], "x"}} }, true), ErrGroupEvent},
		{"encoding tag (MDK 0.8)", edit(func(e *nostr.Event) { e.Tags = append(e.Tags, nostr.Tag{"encoding", "base64"}) }, true), ErrGroupEvent},
		{"p tag", edit(func(e *nostr.Event) { e.Tags = append(e.Tags, nostr.Tag{"p", strings.Repeat("a", 64)}) }, true), ErrGroupEvent},
		{"two expirations", edit(func(e *nostr.Event) {
			e.Tags = append(e.Tags, nostr.Tag{"expiration", "1"}, nostr.Tag{"expiration", "2"})
		}, true), ErrGroupEvent},
		{"expiration not a number", edit(func(e *nostr.Event) { e.Tags = append(e.Tags, nostr.Tag{"expiration", "soon"}) }, true), ErrGroupEvent},
		{"short content", edit(func(e *nostr.Event) { e.Content = base64.StdEncoding.EncodeToString(make([]byte, 27)) }, true), ErrGroupEvent},
		{"bad signature", edit(func(e *nostr.Event) { e.Sig = strings.Repeat("0", 128) }, false), ErrGroupEvent},
		{"content changed after signing", edit(func(e *nostr.Event) { e.Content = a.Content }, false), ErrGroupEvent},
		{"other epoch's key", edit(func(e *nostr.Event) {}, false), ErrUndecryptable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := [][]byte{key}
			if tc.name == "other epoch's key" {
				keys = [][]byte{bytes.Repeat([]byte{5}, 32)}
			}
			if _, _, err := OpenGroupEvent(tc.ev, keys); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMessageID(t *testing.T) {
	msg := []byte{0, 1, 0, 1, 2, 3}
	if id := MessageID(msg); id != sha256.Sum256(msg) {
		t.Fatal("message id is not SHA-256 of the MLSMessage")
	}
}

// TestLegacyGroupContent checks the MIP-era NIP-44 form: the exporter
// secret as a secp256k1 key, conversation key with its own public key.
func TestLegacyGroupContent(t *testing.T) {
	secret := bytes.Repeat([]byte{0x11}, 32)
	msg := []byte{0, 1, 0, 2, 0xff, 0x00, 0x80}
	content, err := SealLegacyGroupContent(secret, msg)
	if err != nil {
		t.Fatal(err)
	}
	// Independently: NIP-44 with get_conversation_key(s, pub(s)).
	sk := hex.EncodeToString(secret)
	pub, _ := nostr.GetPublicKey(sk)
	ck, _ := nip44.GenerateConversationKey(pub, sk)
	pt, err := nip44.Decrypt(content, ck)
	if err != nil || pt != string(msg) {
		t.Fatalf("independent decrypt: %v", err)
	}
	got, err := OpenLegacyGroupContent(secret, content)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("open: %v", err)
	}
	if _, err := OpenLegacyGroupContent(bytes.Repeat([]byte{0x12}, 32), content); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("other secret: %v", err)
	}
}

// TestNIP44Vectors checks go-nostr's nip44 package, which gift wraps and
// the legacy 445 form use, against the official vector file in
// ../shared/nip44-vectors: conversation keys, encryption with the given
// nonce, decryption, and the invalid cases.
func TestNIP44Vectors(t *testing.T) {
	var v struct {
		V2 struct {
			Valid struct {
				GetConversationKey []struct {
					Sec1, Pub2      string
					ConversationKey string `json:"conversation_key"`
				} `json:"get_conversation_key"`
				EncryptDecrypt []struct {
					Sec1, Sec2, Nonce, Plaintext, Payload string
					ConversationKey                       string `json:"conversation_key"`
				} `json:"encrypt_decrypt"`
				EncryptDecryptLongMsg []struct {
					Nonce, Pattern  string
					ConversationKey string `json:"conversation_key"`
					Repeat          int
					PlaintextSHA256 string `json:"plaintext_sha256"`
					PayloadSHA256   string `json:"payload_sha256"`
				} `json:"encrypt_decrypt_long_msg"`
			}
			Invalid struct {
				EncryptMsgLengths  []int `json:"encrypt_msg_lengths"`
				GetConversationKey []struct {
					Sec1, Pub2 string
				} `json:"get_conversation_key"`
				Decrypt []struct {
					Nonce, Plaintext, Payload, Note string
					ConversationKey                 string `json:"conversation_key"`
				}
			}
		}
	}
	loadJSON(t, filepath.Join(sharedDir(t, "nip44-vectors"), "nip44.vectors.json"), &v)
	valid, invalid := v.V2.Valid, v.V2.Invalid
	if len(valid.GetConversationKey) == 0 || len(valid.EncryptDecrypt) == 0 || len(invalid.Decrypt) == 0 {
		t.Fatal("vector file has no cases")
	}
	n := 0
	for i, c := range valid.GetConversationKey {
		ck, err := nip44.GenerateConversationKey(c.Pub2, c.Sec1)
		if err != nil || hex.EncodeToString(ck[:]) != c.ConversationKey {
			t.Errorf("conversation key %d: %x %v", i, ck, err)
		}
		n++
	}
	for i, c := range valid.EncryptDecrypt {
		pub2, _ := nostr.GetPublicKey(c.Sec2)
		ck, err := nip44.GenerateConversationKey(pub2, c.Sec1)
		if err != nil || hex.EncodeToString(ck[:]) != c.ConversationKey {
			t.Errorf("encrypt_decrypt %d: conversation key %x %v", i, ck, err)
			continue
		}
		payload, err := nip44.Encrypt(c.Plaintext, ck, nip44.WithCustomNonce(unhex(t, c.Nonce)))
		if err != nil || payload != c.Payload {
			t.Errorf("encrypt %d: %v", i, err)
		}
		pt, err := nip44.Decrypt(c.Payload, ck)
		if err != nil || pt != c.Plaintext {
			t.Errorf("decrypt %d: %v", i, err)
		}
		n++
	}
	for i, c := range valid.EncryptDecryptLongMsg {
		var ck [32]byte
		copy(ck[:], unhex(t, c.ConversationKey))
		pt := strings.Repeat(c.Pattern, c.Repeat)
		if h := sha256.Sum256([]byte(pt)); hex.EncodeToString(h[:]) != c.PlaintextSHA256 {
			t.Fatalf("long %d: plaintext hash", i)
		}
		payload, err := nip44.Encrypt(pt, ck, nip44.WithCustomNonce(unhex(t, c.Nonce)))
		if err != nil {
			t.Errorf("long %d: %v", i, err)
			continue
		}
		if h := sha256.Sum256([]byte(payload)); hex.EncodeToString(h[:]) != c.PayloadSHA256 {
			t.Errorf("long %d: payload hash", i)
		}
		if back, err := nip44.Decrypt(payload, ck); err != nil || back != pt {
			t.Errorf("long %d: decrypt %v", i, err)
		}
		n++
	}
	var ck [32]byte
	for _, l := range invalid.EncryptMsgLengths {
		if _, err := nip44.Encrypt(strings.Repeat("a", l), ck); err == nil {
			t.Errorf("encrypting %d bytes succeeded", l)
		}
		n++
	}
	for i, c := range invalid.GetConversationKey {
		if _, err := nip44.GenerateConversationKey(c.Pub2, c.Sec1); err == nil {
			t.Errorf("invalid conversation key %d accepted", i)
		}
		n++
	}
	for i, c := range invalid.Decrypt {
		var k [32]byte
		copy(k[:], unhex(t, c.ConversationKey))
		if _, err := nip44.Decrypt(c.Payload, k); err == nil {
			t.Errorf("invalid decrypt %d (%s) accepted", i, c.Note)
		}
		n++
	}
	t.Logf("%d NIP-44 vector cases", n)
}
