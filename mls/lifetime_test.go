package mls

import (
	"errors"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/mls/cipher"
)

// keyPackageWithLifetime makes c a KeyPackage valid in [notBefore, notAfter].
func keyPackageWithLifetime(t *testing.T, suite *cipher.Suite, c *testClient, notBefore, notAfter uint64) *KeyPackage {
	t.Helper()
	lp := c.leaf().withDefaults(CipherSuite(suite.ID()))
	kp, _, err := NewKeyPackage(suite, c.signer, KeyPackageParams{Credential: lp.Credential, Capabilities: lp.Capabilities,
		Lifetime: Lifetime{NotBefore: notBefore, NotAfter: notAfter}})
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestLifetimesCheckedByDefault checks that KeyPackage lifetimes are
// checked without any configuration, against the clock read at each
// check: a KeyPackage that expired in 1970 or is not valid yet cannot be
// added (neither committed nor accepted), and a clock that moves is
// followed rather than frozen at group creation.
func TestLifetimesCheckedByDefault(t *testing.T) {
	now := uint64(time.Now().Unix())
	suite, alice, bob := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true})
	carol := newTestClient(t, suite, "carol")
	for _, tc := range []struct {
		name                string
		notBefore, notAfter uint64
		// clock of a committer that still finds the KeyPackage valid
		then time.Time
	}{
		{"expired in 1970", 0, 60, time.Unix(30, 0)},
		{"not valid yet", now + 3600, now + 7200, time.Unix(int64(now)+5400, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kp := keyPackageWithLifetime(t, suite, carol, tc.notBefore, tc.notAfter)
			add := CommitOptions{Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}}}
			if _, err := alice.g.Commit(add); !errors.Is(err, ErrLifetime) {
				t.Fatalf("committing the Add: %v, want ErrLifetime", err)
			}
			// A committer whose clock says otherwise commits it; bob, on
			// the default clock, refuses the commit and stays as he was.
			skewed, err := RestoreGroup(mustState(t, alice.g), alice.signer, GroupConfig{Clock: func() time.Time { return tc.then }})
			if err != nil {
				t.Fatal(err)
			}
			out, err := skewed.Commit(add)
			if err != nil {
				t.Fatal(err)
			}
			refusedUnchanged(t, bob.g, out.Commit, ErrLifetime)
		})
	}

	// The clock is read at every check.
	clock := time.Unix(int64(now), 0)
	g, err := RestoreGroup(mustState(t, alice.g), alice.signer, GroupConfig{Clock: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	kp := keyPackageWithLifetime(t, suite, carol, now-10, now+10)
	add := CommitOptions{Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}}}
	if _, err := g.Commit(add); err != nil {
		t.Fatalf("valid now: %v", err)
	}
	g.DiscardPendingCommit()
	clock = clock.Add(time.Minute)
	if _, err := g.Commit(add); !errors.Is(err, ErrLifetime) {
		t.Fatalf("a minute later: %v, want ErrLifetime", err)
	}
	// MaxLifetime bounds what is added.
	long, err := RestoreGroup(mustState(t, alice.g), alice.signer, GroupConfig{MaxLifetime: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := long.Commit(add); !errors.Is(err, ErrLifetime) {
		t.Fatalf("20 s lifetime under a 10 s bound: %v, want ErrLifetime", err)
	}
}

// TestJoinIgnoresExpiredTreeLeaves checks what docs/mls.md says applies at
// join: the key_package leaves of a received tree are not checked against
// the current time (RFC 9420 section 7.3 only recommends it), so a group
// whose creator's KeyPackage lifetime has long passed can still be joined;
// the Add of the joiner's own KeyPackage was checked by the committer.
func TestJoinIgnoresExpiredTreeLeaves(t *testing.T) {
	suite := mustSuite(t, X25519AES128GCMSHA256Ed25519)
	alice, bob := newTestClient(t, suite, "alice"), newTestClient(t, suite, "bob")
	leaf := alice.leaf()
	leaf.Lifetime = Lifetime{NotBefore: 0, NotAfter: 60}
	var err error
	if alice.g, err = CreateGroup(X25519AES128GCMSHA256Ed25519, []byte("old"), alice.signer, leaf, nil, GroupConfig{RatchetTreeInWelcome: true}); err != nil {
		t.Fatal(err)
	}
	kp, priv := bob.keyPackage(t, suite)
	out := commitAndMerge(t, alice.g, CommitOptions{Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}}})
	join(t, suite, bob, kp, priv, out, false, GroupConfig{})
	if ln := bob.g.st.tree.Leaf(0); ln.Source != LeafNodeSourceKeyPackage || ln.Lifetime.NotAfter != 60 {
		t.Fatalf("alice's leaf: source %d, lifetime %+v; the test needs her expired KeyPackage leaf", ln.Source, ln.Lifetime)
	}
	agree(t, alice.g, bob.g)
}
