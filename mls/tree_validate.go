package mls

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// ErrDuplicateKey means two nodes of a ratchet tree share an encryption
// key, or two leaves share a signature key.
var ErrDuplicateKey = errors.New("mls: key appears twice in the ratchet tree")

// ErrTreeHash means a ratchet tree does not hash to the GroupContext's
// tree_hash.
var ErrTreeHash = errors.New("mls: tree hash does not match the group context")

// VerifyIntegrity runs the checks a joiner makes on a received ratchet tree
// (RFC 9420 section 12.4.3.1) against the group's GroupContext: the tree
// hash, parent-hash validity of every parent, the unmerged-leaves rules,
// every leaf valid as section 7.3 asks (signature over group id and leaf
// index, capabilities covering the required_capabilities and every
// GroupContext extension, credential types supported by all members,
// lifetimes under rules), and unique encryption and signature keys.
func (t *Tree) VerifyIntegrity(suite *cipher.Suite, ctx *GroupContext, rules LeafNodeRules) error {
	hashes, err := t.TreeHashes(suite)
	if err != nil {
		return err
	}
	if !bytes.Equal(hashes[t.Root()], ctx.TreeHash) {
		return ErrTreeHash
	}
	if err := t.VerifyParentHashes(suite); err != nil {
		return err
	}
	if err := t.VerifyUnmergedLeaves(); err != nil {
		return err
	}
	required, _, err := ctx.Extensions.RequiredCapabilities()
	if err != nil {
		return err
	}
	if err := t.verifyLeaves(suite, ctx.GroupID, rules); err != nil {
		return err
	}
	encKeys := make(map[string]bool, len(t.nodes))
	sigKeys := make(map[string]bool, t.leaves)
	var credTypes []CredentialType
	for x, n := range t.nodes {
		if n == nil {
			continue
		}
		if n.Parent != nil {
			if encKeys[string(n.Parent.EncryptionKey)] {
				return fmt.Errorf("%w: encryption key of node %d", ErrDuplicateKey, x)
			}
			encKeys[string(n.Parent.EncryptionKey)] = true
			continue
		}
		ln := n.Leaf
		leaf := treemath.NodeIndex(x).LeafIndex()
		if err := supportsGroup(ln, ctx, &required); err != nil {
			return fmt.Errorf("leaf %d: %w", leaf, err)
		}
		if encKeys[string(ln.EncryptionKey)] {
			return fmt.Errorf("%w: encryption key of leaf %d", ErrDuplicateKey, leaf)
		}
		encKeys[string(ln.EncryptionKey)] = true
		if sigKeys[string(ln.SignatureKey)] {
			return fmt.Errorf("%w: signature key of leaf %d", ErrDuplicateKey, leaf)
		}
		sigKeys[string(ln.SignatureKey)] = true
		if !contains(credTypes, ln.Credential.Type) {
			credTypes = append(credTypes, ln.Credential.Type)
		}
	}
	// Every member must support every credential type in use.
	for x := 0; x < len(t.nodes); x += 2 {
		if n := t.nodes[x]; n != nil {
			for _, ct := range credTypes {
				if !contains(n.Leaf.Capabilities.Credentials, ct) {
					return fmt.Errorf("%w: leaf %d does not support credential type 0x%04x in use", ErrInvalidLeafNode, x/2, uint16(ct))
				}
			}
		}
	}
	return nil
}

// supportsGroup checks that ln's capabilities cover the group's required
// capabilities and every non-default GroupContext extension (RFC 9420
// sections 7.3 and 13.4).
func supportsGroup(ln *LeafNode, ctx *GroupContext, required *RequiredCapabilities) error {
	caps := &ln.Capabilities
	for _, e := range ctx.Extensions {
		if !isDefaultExtension(e.Type) && !contains(caps.Extensions, e.Type) {
			return fmt.Errorf("%w: group extension 0x%04x not supported", ErrInvalidLeafNode, uint16(e.Type))
		}
	}
	for _, e := range required.ExtensionTypes {
		if !isDefaultExtension(e) && !contains(caps.Extensions, e) {
			return fmt.Errorf("%w: required extension 0x%04x not supported", ErrInvalidLeafNode, uint16(e))
		}
	}
	for _, p := range required.ProposalTypes {
		if !isDefaultProposal(p) && !contains(caps.Proposals, p) {
			return fmt.Errorf("%w: required proposal 0x%04x not supported", ErrInvalidLeafNode, uint16(p))
		}
	}
	for _, c := range required.CredentialTypes {
		if !contains(caps.Credentials, c) {
			return fmt.Errorf("%w: required credential type 0x%04x not supported", ErrInvalidLeafNode, uint16(c))
		}
	}
	return nil
}

// isDefaultProposal reports whether t is one of the proposal types RFC 9420
// section 7.2 calls default: they are never listed in capabilities.
func isDefaultProposal(t ProposalType) bool {
	return t >= ProposalAdd && t <= ProposalGroupContextExtensions
}

// verifyLeaves runs VerifyLeafNode on every leaf, spread over the available
// CPUs: the signature checks dominate the cost of joining a large group.
// The error reported is that of the lowest failing leaf.
func (t *Tree) verifyLeaves(suite *cipher.Suite, groupID []byte, rules LeafNodeRules) error {
	var leaves []treemath.LeafIndex
	for l := uint32(0); l < t.leaves; l++ {
		if t.Leaf(treemath.LeafIndex(l)) != nil {
			leaves = append(leaves, treemath.LeafIndex(l))
		}
	}
	errs := make([]error, len(leaves))
	workers := min(runtime.GOMAXPROCS(0), len(leaves)/32+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(leaves); i += workers {
				ln := t.Leaf(leaves[i])
				errs[i] = VerifyLeafNode(suite, ln, ln.Source, groupID, uint32(leaves[i]), rules)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("leaf %d: %w", leaves[i], err)
		}
	}
	return nil
}
