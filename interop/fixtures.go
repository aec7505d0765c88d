package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
)

// KeyPackageFixture is a KeyPackage made by an independent MLS implementation
// for a Nostr identity, saved under interop/fixtures/ for the relay's
// KeyPackage validation tests. The BasicCredential identity is NostrPubkey.
type KeyPackageFixture struct {
	Name string `json:"name"`
	// Tool is the library and version that made the KeyPackage.
	Tool  string `json:"tool"`
	Suite uint16 `json:"suite"`
	// NostrPubkey is the 32-byte x-only secp256k1 public key; NostrSecretKey
	// signs the Nostr event that carries the KeyPackage.
	NostrPubkey    Hex `json:"nostr_pubkey"`
	NostrSecretKey Hex `json:"nostr_secret_key"`
	// KeyPackage is framed as an MLSMessage (wire format mls_key_package);
	// KeyPackageBare is the inner struct.
	KeyPackage     Hex `json:"key_package"`
	KeyPackageBare Hex `json:"key_package_bare"`
	// KeyPackageRef is RefHash("MLS 1.0 KeyPackage Reference", bare) as the
	// tool computed it.
	KeyPackageRef Hex    `json:"key_package_ref"`
	NotBefore     uint64 `json:"not_before"`
	NotAfter      uint64 `json:"not_after"`
	// Lifetime is "default" (the tool's own choice) or "10y".
	Lifetime  string `json:"lifetime"`
	CreatedAt string `json:"created_at"`
}

// ErrNoFixtures means the fixtures directory holds no KeyPackage fixtures.
var ErrNoFixtures = errors.New("no KeyPackage fixtures")

// FixturesDir is interop/fixtures in the source tree.
func FixturesDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "fixtures")
}

// LoadKeyPackageFixtures reads every keypackage-*.json file in dir, sorted by
// name.
func LoadKeyPackageFixtures(dir string) ([]KeyPackageFixture, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "keypackage-*.json"))
	if err != nil {
		return nil, fmt.Errorf("fixtures: %w", err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoFixtures)
	}
	slices.Sort(paths)
	out := make([]KeyPackageFixture, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("fixtures: %w", err)
		}
		var f KeyPackageFixture
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("fixture %s: %w", filepath.Base(p), err)
		}
		out = append(out, f)
	}
	return out, nil
}

// tenYears is the lifetime of the long-lived fixtures, so they stay valid.
const tenYears = 10 * 365 * 24 * time.Hour

// GenerateKeyPackageFixtures makes, with each peer, one KeyPackage with the
// tool's default lifetime and one valid for ten years (from an hour ago, to
// allow for clock skew), each for a fresh Nostr key, and writes them to dir.
func (c Config) GenerateKeyPackageFixtures(ctx context.Context, dir string, now time.Time) ([]KeyPackageFixture, error) {
	var out []KeyPackageFixture
	for _, kind := range []string{KindTSMLS, KindMLSGo} {
		fs, err := c.generateWith(ctx, kind, now)
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("fixtures: %w", err)
	}
	for _, f := range out {
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("fixture %s: %w", f.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "keypackage-"+f.Name+".json"), append(b, '\n'), 0o644); err != nil {
			return nil, fmt.Errorf("fixture %s: %w", f.Name, err)
		}
	}
	return out, nil
}

func (c Config) generateWith(ctx context.Context, kind string, now time.Time) (fs []KeyPackageFixture, err error) {
	p, err := c.Start(ctx, kind)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := p.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	var hello HelloResult
	if err := p.Call(ctx, "hello", nil, &hello); err != nil {
		return nil, err
	}
	lifetimes := []struct {
		name string
		lt   *Lifetime
	}{
		{"default", nil},
		{"10y", &Lifetime{NotBefore: uint64(now.Add(-time.Hour).Unix()), NotAfter: uint64(now.Add(tenYears).Unix())}},
	}
	for _, l := range lifetimes {
		sk, err := btcec.NewPrivateKey()
		if err != nil {
			return nil, fmt.Errorf("nostr key: %w", err)
		}
		pub := schnorr.SerializePubKey(sk.PubKey())
		var kp KeyPackageResult
		if err := p.Call(ctx, "create_key_package", CreateKeyPackageArgs{Identity: pub, Suite: Suite0001, Lifetime: l.lt}, &kp); err != nil {
			return nil, err
		}
		fs = append(fs, KeyPackageFixture{
			Name:           strings.ReplaceAll(kind, "_", "-") + "-" + l.name,
			Tool:           hello.Tool,
			Suite:          Suite0001,
			NostrPubkey:    pub,
			NostrSecretKey: sk.Serialize(),
			KeyPackage:     kp.KeyPackage,
			KeyPackageBare: kp.KeyPackageBare,
			KeyPackageRef:  kp.KeyPackageRef,
			NotBefore:      uint64(kp.NotBefore),
			NotAfter:       uint64(kp.NotAfter),
			Lifetime:       l.name,
			CreatedAt:      now.UTC().Format(time.RFC3339),
		})
	}
	return fs, nil
}
