package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
)

// appendVarint writes an RFC 9420 section 2.1.2 variable-length length prefix.
func appendVarint(b []byte, n int) []byte {
	switch {
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return append(b, 0x40|byte(n>>8), byte(n))
	default:
		return append(b, 0x80|byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// keyPackageRef recomputes RefHash("MLS 1.0 KeyPackage Reference", kp) for
// SHA-256 suites, independently of both tools.
func keyPackageRef(bare []byte) []byte {
	const label = "MLS 1.0 KeyPackage Reference"
	in := appendVarint(nil, len(label))
	in = append(in, label...)
	in = appendVarint(in, len(bare))
	in = append(in, bare...)
	sum := sha256.Sum256(in)
	return sum[:]
}

func TestKeyPackageFixtures(t *testing.T) {
	fixtures, err := LoadKeyPackageFixtures(FixturesDir())
	if err != nil {
		t.Fatal(err)
	}
	now := uint64(time.Now().Unix())
	tools := map[string]bool{}
	for _, f := range fixtures {
		t.Run(f.Name, func(t *testing.T) {
			tools[f.Tool] = true
			sk, _ := btcec.PrivKeyFromBytes(f.NostrSecretKey)
			if got := schnorr.SerializePubKey(sk.PubKey()); !bytes.Equal(got, f.NostrPubkey) || len(got) != 32 {
				t.Fatalf("secret key gives pubkey %x, fixture says %x", got, f.NostrPubkey)
			}
			if f.Suite != Suite0001 || !bytes.HasPrefix(f.KeyPackageBare, []byte{0, 1, 0, 1}) {
				t.Fatalf("suite %d, bare KeyPackage starts %x; want mls10 and suite 0x0001", f.Suite, f.KeyPackageBare[:4])
			}
			if want := append([]byte{0, 1, 0, 5}, f.KeyPackageBare...); !bytes.Equal(f.KeyPackage, want) {
				t.Fatalf("framed KeyPackage is not 0001 0005 followed by the bare one")
			}
			// BasicCredential: credential_type 0x0001, identity<V> of 32 bytes.
			cred := append([]byte{0, 1, 32}, f.NostrPubkey...)
			if !bytes.Contains(f.KeyPackageBare, cred) {
				t.Fatalf("KeyPackage has no BasicCredential with the Nostr pubkey as identity")
			}
			if got := keyPackageRef(f.KeyPackageBare); !bytes.Equal(got, f.KeyPackageRef) {
				t.Fatalf("KeyPackageRef %x, recomputed %x", f.KeyPackageRef, got)
			}
			if f.NotBefore >= f.NotAfter {
				t.Fatalf("lifetime %d..%d is empty", f.NotBefore, f.NotAfter)
			}
			if f.Lifetime == "10y" && (f.NotBefore > now || f.NotAfter < now+5*365*24*3600) {
				t.Fatalf("long-lived fixture valid %d..%d, now %d: regenerate it (go run ./interop/cmd/mkfixtures)", f.NotBefore, f.NotAfter, now)
			}
		})
	}
	if len(tools) < 2 {
		t.Fatalf("fixtures come from %d tools, want ts-mls and mls-go", len(tools))
	}
}

// TestKeyPackageFixturesAcceptedAcrossTools has each tool add the long-lived
// KeyPackages, so a fixture whose signature or encoding is off fails here
// rather than in a relay test.
func TestKeyPackageFixturesAcceptedAcrossTools(t *testing.T) {
	fixtures, err := LoadKeyPackageFixtures(FixturesDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := testConfig(ctx, t)
	for _, kind := range []string{KindTSMLS, KindMLSGo} {
		t.Run(kind, func(t *testing.T) {
			for _, f := range fixtures {
				if f.Lifetime != "10y" {
					continue // default lifetimes run out; those fixtures only document the default
				}
				tampered := bytes.Clone(f.KeyPackage)
				tampered[len(tampered)-1] ^= 1 // last byte of the signature
				for _, form := range []struct {
					name   string
					kp     []byte
					wantOK bool
				}{{"framed", f.KeyPackage, true}, {"bare", f.KeyPackageBare, true}, {"bad signature", tampered, false}} {
					p := startPeer(ctx, t, cfg, kind)
					g := &testGroup{t: t, ctx: ctx, cfg: cfg}
					creator := &member{name: kind, p: p, identity: bytes.Repeat([]byte{7}, 32)}
					g.create(creator)
					var c CommitResult
					err := p.Call(ctx, "add_member", AddMemberArgs{KeyPackage: form.kp}, &c)
					if !form.wantOK {
						var ce *CallError
						if !errors.As(err, &ce) {
							t.Fatalf("%s added fixture %s with a %s: %v", kind, f.Name, form.name, err)
						}
						continue
					}
					if err != nil {
						t.Fatalf("%s refused fixture %s (%s): %v", kind, f.Name, form.name, err)
					}
					if c.Epoch != 1 || len(c.Welcome) == 0 {
						t.Fatalf("%s adding fixture %s (%s): epoch %d, welcome %d bytes", kind, f.Name, form.name, c.Epoch, len(c.Welcome))
					}
					var st StateResult
					g.call(creator, "state", nil, &st)
					if len(st.Members) != 2 || st.Members[1].LeafIndex != 1 || !bytes.Equal(st.Members[1].Identity, f.NostrPubkey) {
						t.Fatalf("%s after adding fixture %s: members %v", kind, f.Name, st.Members)
					}
				}
			}
		})
	}
}
