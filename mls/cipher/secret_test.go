package cipher_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
)

// TestSecretsPrintRedacted asserts that no fmt verb and no slog handler
// reveals the bytes of a secret or a private key, directly or inside a
// struct.
func TestSecretsPrintRedacted(t *testing.T) {
	s, err := cipher.New(cipher.MLS128DHKEMP256AES128GCMSHA256P256)
	if err != nil {
		t.Fatal(err)
	}
	secret := cipher.Secret(bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 8))
	sigKey, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	sigBytes, err := sigKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	hpkeKey, err := s.DeriveKeyPair(secret)
	if err != nil {
		t.Fatal(err)
	}
	hpkeBytes, err := hpkeKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	type wrapper struct {
		Exported cipher.Secret
	}
	tests := []struct {
		name  string
		value any
		raw   []byte
	}{
		{"Secret", secret, secret},
		{"*Secret", &secret, secret},
		{"struct with exported Secret", wrapper{Exported: secret}, secret},
		{"*SignatureKey", sigKey, sigBytes},
		{"SignatureKey", *sigKey, sigBytes},
		{"*HPKEPrivateKey", hpkeKey, hpkeBytes},
		{"HPKEPrivateKey", *hpkeKey, hpkeBytes},
	}
	for _, tc := range tests {
		hexRaw := hex.EncodeToString(tc.raw)
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
			out := fmt.Sprintf(verb, tc.value)
			if strings.Contains(strings.ToLower(out), hexRaw) || strings.Contains(out, string(tc.raw)) {
				t.Errorf("%s: %s reveals the secret: %s", tc.name, verb, out)
			}
			if !strings.Contains(out, "redacted") {
				t.Errorf("%s: %s = %q, want a redacted placeholder", tc.name, verb, out)
			}
		}
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("k", "v", tc.value)
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("k", "v", tc.value)
		if out := buf.String(); strings.Contains(strings.ToLower(out), hexRaw) || strings.Contains(out, string(tc.raw)) {
			t.Errorf("%s: slog reveals the secret: %s", tc.name, out)
		}
	}
}

func TestSecretHelpers(t *testing.T) {
	s := cipher.Secret{1, 2, 3}
	c := s.Clone()
	s.Zero()
	if !bytes.Equal(s, []byte{0, 0, 0}) || !bytes.Equal(c, []byte{1, 2, 3}) {
		t.Fatalf("Zero/Clone: s=%v c=%v", []byte(s), []byte(c))
	}
	if !c.Equal([]byte{1, 2, 3}) || c.Equal([]byte{1, 2}) || c.Equal([]byte{1, 2, 4}) {
		t.Fatal("Equal")
	}
}
