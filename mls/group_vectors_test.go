package mls_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
)

// groupCounter counts cases per file and group like vectortest.Counter,
// against mls/testdata/counts_group.json.
type groupCounter struct {
	file   string
	counts map[string]int
}

func newGroupCounter(file string) *groupCounter {
	return &groupCounter{file: file, counts: map[string]int{}}
}

func (c *groupCounter) add(group string) { c.counts[group]++ }

func (c *groupCounter) check(t *testing.T, total int) {
	t.Helper()
	sum := 0
	for _, n := range c.counts {
		sum += n
	}
	if sum != total {
		t.Errorf("%s: counted %d cases, file has %d", c.file, sum, total)
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "counts_group.json"))
	if err != nil {
		t.Fatal(err)
	}
	var all map[string]map[string]int
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatalf("counts_group.json: %v", err)
	}
	want, ok := all[c.file]
	if !ok {
		t.Fatalf("counts_group.json has no entry for %s (ran %v)", c.file, c.counts)
	}
	names := map[string]bool{}
	for g := range want {
		names[g] = true
	}
	for g := range c.counts {
		names[g] = true
	}
	sorted := make([]string, 0, len(names))
	for g := range names {
		sorted = append(sorted, g)
	}
	sort.Strings(sorted)
	for _, g := range sorted {
		if c.counts[g] != want[g] {
			t.Errorf("%s [%s]: ran %d cases, expected %d", c.file, g, c.counts[g], want[g])
		}
	}
}

type passiveCase struct {
	CipherSuite  vectortest.Uint `json:"cipher_suite"`
	ExternalPSKs []struct {
		PSKID vectortest.Hex `json:"psk_id"`
		PSK   vectortest.Hex `json:"psk"`
	} `json:"external_psks"`
	KeyPackage                vectortest.Hex `json:"key_package"`
	SignaturePriv             vectortest.Hex `json:"signature_priv"`
	EncryptionPriv            vectortest.Hex `json:"encryption_priv"`
	InitPriv                  vectortest.Hex `json:"init_priv"`
	Welcome                   vectortest.Hex `json:"welcome"`
	RatchetTree               vectortest.Hex `json:"ratchet_tree"`
	InitialEpochAuthenticator vectortest.Hex `json:"initial_epoch_authenticator"`
	Epochs                    []struct {
		Proposals          []vectortest.Hex `json:"proposals"`
		Commit             vectortest.Hex   `json:"commit"`
		EpochAuthenticator vectortest.Hex   `json:"epoch_authenticator"`
	} `json:"epochs"`
}

// runPassive joins from the case's Welcome and follows every epoch,
// comparing epoch authenticators.
func runPassive(suite *cipher.Suite, tc *passiveCase) error {
	kpMsg, err := mls.DecodeMLSMessage(tc.KeyPackage)
	if err != nil || kpMsg.KeyPackage == nil {
		return fmt.Errorf("key package: %v", err)
	}
	initKey, err := suite.ParseHPKEPrivateKey(tc.InitPriv)
	if err != nil {
		return fmt.Errorf("init_priv: %w", err)
	}
	encKey, err := suite.ParseHPKEPrivateKey(tc.EncryptionPriv)
	if err != nil {
		return fmt.Errorf("encryption_priv: %w", err)
	}
	sigKey, err := suite.ParseSignatureKey(tc.SignaturePriv)
	if err != nil {
		return fmt.Errorf("signature_priv: %w", err)
	}
	var opts mls.JoinOptions
	if tc.RatchetTree != nil {
		if opts.RatchetTree, err = mls.DecodeRatchetTree(tc.RatchetTree); err != nil {
			return fmt.Errorf("ratchet_tree: %w", err)
		}
	}
	for _, p := range tc.ExternalPSKs {
		opts.PSKs = append(opts.PSKs, mls.PSKEntry{ID: p.PSKID, Secret: p.PSK})
	}
	g, err := mls.JoinFromWelcome(tc.Welcome, kpMsg.KeyPackage, &mls.KeyPackagePrivate{InitKey: initKey, EncryptionKey: encKey}, sigKey, opts, mls.GroupConfig{})
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if !bytes.Equal(g.EpochAuthenticator(), tc.InitialEpochAuthenticator) {
		return fmt.Errorf("initial epoch authenticator differs")
	}
	for i, ep := range tc.Epochs {
		for j, p := range ep.Proposals {
			if _, err := g.ProcessMessage(p); err != nil {
				return fmt.Errorf("epoch %d proposal %d: %w", i, j, err)
			}
		}
		if _, err := g.ProcessMessage(ep.Commit); err != nil {
			return fmt.Errorf("epoch %d commit: %w", i, err)
		}
		if !bytes.Equal(g.EpochAuthenticator(), ep.EpochAuthenticator) {
			return fmt.Errorf("epoch %d: epoch authenticator differs", i)
		}
	}
	return nil
}

// TestPassiveClientVectors joins from each Welcome and follows every
// epoch's proposals and commit, checking epoch_authenticator after the
// join and after every epoch.
func TestPassiveClientVectors(t *testing.T) {
	files := []string{
		"passive-client-welcome.json",
		"passive-client-handling-commit.json",
		"passive-client-random.json",
		"interop-passive/application.json",
		"interop-passive/branch.json",
		"interop-passive/commit.json",
		"interop-passive/external_join.json",
		"interop-passive/external_proposals.json",
		"interop-passive/reinit.json",
		"interop-passive/welcome_join.json",
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			var cases []passiveCase
			vectortest.Load(t, file, &cases)
			count := newGroupCounter(file)
			for i := range cases {
				tc := &cases[i]
				cs := uint64(tc.CipherSuite)
				suite, err := cipher.New(cipher.CipherSuite(cs))
				if errors.Is(err, cipher.ErrUnsupportedCipherSuite) {
					count.add(vectortest.Suite(cs) + " (unsupported)")
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := runPassive(suite, tc); err != nil {
					t.Errorf("case %d (suite %d): %v", i, cs, err)
					count.add(vectortest.Suite(cs) + " (failed)")
					continue
				}
				count.add(vectortest.Suite(cs))
			}
			count.check(t, len(cases))
		})
	}
}
