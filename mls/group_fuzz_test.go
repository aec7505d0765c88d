package mls

import (
	"bytes"
	"testing"
)

// FuzzGroupProcessMessage feeds arbitrary bytes to a member: it must never
// panic, and any input it rejects must leave its epoch as it was.
func FuzzGroupProcessMessage(f *testing.F) {
	_, alice, bob := twoMembers(f, GroupConfig{RatchetTreeInWelcome: true})
	app, err := alice.g.Protect([]byte("hi"), nil)
	if err != nil {
		f.Fatal(err)
	}
	prop, _, err := alice.g.ProposeRemove(1)
	if err != nil {
		f.Fatal(err)
	}
	out, err := alice.g.Commit(CommitOptions{ForcePath: true, SkipStored: true})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{app, prop, out.Commit, nil, {0, 1, 0, 1}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		epoch, auth := bob.g.Epoch(), bob.g.EpochAuthenticator()
		if _, err := bob.g.ProcessMessage(data); err != nil {
			if bob.g.Epoch() != epoch || !bytes.Equal(bob.g.EpochAuthenticator(), auth) {
				t.Fatalf("rejected input changed the epoch: %v", err)
			}
		}
	})
}
