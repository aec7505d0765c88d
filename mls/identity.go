package mls

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrCredentialRejected means the group's credential validator refused a
// leaf: a credential the application does not accept, or a new leaf that
// does not present the same client as the one it replaces (RFC 9420
// section 5.3.1). Match with errors.Is; errors.As gives the
// *CredentialError with the details.
var ErrCredentialRejected = errors.New("mls: credential rejected")

// LeafChange says why a leaf is validated.
type LeafChange uint8

// The occasions on which the credential validator is called.
const (
	// LeafAdded: the KeyPackage leaf of an Add proposal.
	LeafAdded LeafChange = iota + 1
	// LeafUpdated: the leaf of an Update proposal, succeeding the sender's.
	LeafUpdated
	// LeafCommitted: the leaf in a member's UpdatePath, succeeding the
	// committer's.
	LeafCommitted
	// LeafExternalJoin: the leaf of an external joiner's UpdatePath;
	// Previous is set when the commit removes the joiner's old leaf.
	LeafExternalJoin
	// LeafInTree: a leaf of the ratchet tree of a group being joined (from
	// a Welcome or for an external commit).
	LeafInTree
)

func (c LeafChange) String() string {
	switch c {
	case LeafAdded:
		return "added"
	case LeafUpdated:
		return "updated"
	case LeafCommitted:
		return "committed"
	case LeafExternalJoin:
		return "external join"
	case LeafInTree:
		return "in the joined tree"
	}
	return fmt.Sprintf("LeafChange(%d)", uint8(c))
}

// CredentialCheck is what a credential validator decides on. Leaf has
// already passed the protocol's checks (signature, capabilities,
// lifetime); the validator decides whether its credential is acceptable.
type CredentialCheck struct {
	Change    LeafChange
	GroupID   []byte
	LeafIndex uint32
	Leaf      *LeafNode
	// Previous is the leaf Leaf replaces (an Update, a committer's path
	// leaf, an external joiner resynchronising), nil for a new member.
	Previous *LeafNode
}

// CredentialValidator accepts a leaf (nil) or refuses it with a reason.
// It is called for every leaf that enters or changes in the group: the
// KeyPackage of every Add, every Update, every committer's path leaf,
// every external joiner's leaf, and every leaf of a tree joined. It runs
// before anything changes, so a refusal leaves the group as it was. It
// must not keep the leaf (its byte slices may alias a message).
type CredentialValidator func(CredentialCheck) error

// DefaultCredentialValidator accepts any credential for a new leaf and
// enforces the successor rule of RFC 9420 section 5.3.1 for a leaf that
// replaces another: the same credential type, and for a BasicCredential
// the same identity bytes (for other types, the same credential). An
// application that authenticates credentials (Marmot's identity proof,
// X.509) installs its own validator, which may call this one for the
// successor rule.
func DefaultCredentialValidator(c CredentialCheck) error {
	if c.Previous == nil {
		return nil
	}
	prev, next := &c.Previous.Credential, &c.Leaf.Credential
	if prev.Type != next.Type {
		return fmt.Errorf("credential type changes from 0x%04x to 0x%04x", uint16(prev.Type), uint16(next.Type))
	}
	if prev.Type == CredentialBasic {
		if !bytes.Equal(prev.Identity, next.Identity) {
			return fmt.Errorf("identity changes from %q to %q", prev.Identity, next.Identity)
		}
		return nil
	}
	a, errA := Marshal(prev)
	b, errB := Marshal(next)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		return errors.New("credential changes")
	}
	return nil
}

// CredentialError is the error of a refused leaf.
type CredentialError struct {
	Change    LeafChange
	LeafIndex uint32
	Err       error
}

func (e *CredentialError) Error() string {
	return fmt.Sprintf("%v: leaf %d (%v): %v", ErrCredentialRejected, e.LeafIndex, e.Change, e.Err)
}

// Unwrap gives ErrCredentialRejected and the validator's reason.
func (e *CredentialError) Unwrap() []error { return []error{ErrCredentialRejected, e.Err} }

// validateCredential runs the group's validator (the default one when none
// is configured).
func (g *Group) validateCredential(c CredentialCheck) error {
	return runValidator(g.cfg.CredentialValidator, c)
}

func runValidator(v CredentialValidator, c CredentialCheck) error {
	if v == nil {
		v = DefaultCredentialValidator
	}
	if err := v(c); err != nil {
		return &CredentialError{Change: c.Change, LeafIndex: c.LeafIndex, Err: err}
	}
	return nil
}
