package mls

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/burrow-relay/burrow/mls/keyschedule"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// staged is the result of applying a Commit's proposals to a copy of the
// current tree and GroupContext (RFC 9420 section 12.3).
type staged struct {
	tree         *Tree
	ctx          GroupContext // extensions updated; epoch, hashes not yet
	added        []treemath.LeafIndex
	addedKPs     []*KeyPackage
	psks         []PreSharedKeyID
	externalInit *ExternalInit
	reinit       *ReInit
	removedMe    bool
	pathRequired bool
	// myUpdateRef is the reference of this member's own Update proposal
	// that the commit applies, if any.
	myUpdateRef []byte
}

// pathRequiredFor reports whether a proposal type forces an UpdatePath
// (RFC 9420 section 17.4 "Path Required"; unknown types are treated as
// requiring one, the safe choice).
func pathRequiredFor(t ProposalType) bool {
	switch t {
	case ProposalAdd, ProposalPSK, ProposalReInit, ProposalAppDataUpdate:
		return false
	}
	return true
}

// senderLeaf returns the member leaf of s, if s is a member.
func senderLeaf(s Sender) (treemath.LeafIndex, bool) {
	return treemath.LeafIndex(s.Index), s.Type == SenderMember
}

// applyProposals validates a Commit's resolved proposal list against RFC
// 9420 sections 12.1 and 12.2 and applies it to copies of the tree and
// GroupContext. committer is the commit's sender; for a member committer
// its leaf is committer.Index. Nothing in g changes.
func (g *Group) applyProposals(list []storedProposal, committer Sender, byRef []bool) (*staged, error) {
	st := g.st
	s := &staged{tree: st.tree.clone(), ctx: st.ctx}
	s.ctx.Extensions = slices.Clone(st.ctx.Extensions)
	if len(list) == 0 {
		s.pathRequired = true
	}
	external := committer.Type == SenderNewMemberCommit
	if committer.Type != SenderMember && !external {
		return nil, fmt.Errorf("%w: commit from sender type %d", ErrInvalidSender, committer.Type)
	}
	var (
		gce        *GroupContextExtensions
		appUpdates []*AppDataUpdate
		updates    []storedProposal
		removes    []treemath.LeafIndex
		adds       []*KeyPackage
		touched    = map[treemath.LeafIndex]bool{}
		pskIDs     [][]byte
		nExtInit   int
		custom     []ProposalType
	)
	touch := func(l treemath.LeafIndex) error {
		if touched[l] {
			return fmt.Errorf("%w: several Update/Remove proposals for leaf %d", ErrInvalidProposalList, l)
		}
		touched[l] = true
		return nil
	}
	for i, sp := range list {
		p := sp.proposal
		if pathRequiredFor(p.Type) {
			s.pathRequired = true
		}
		if external && byRef != nil && byRef[i] {
			return nil, fmt.Errorf("%w: external commit references a proposal", ErrInvalidProposalList)
		}
		if external && p.Type != ProposalExternalInit && p.Type != ProposalRemove && p.Type != ProposalPSK {
			// RFC 9420 section 12.4.3.2: an external commit carries its
			// ExternalInit, at most one Remove (resynchronisation) and PSKs.
			return nil, fmt.Errorf("%w: proposal type 0x%04x in an external commit", ErrInvalidProposalList, uint16(p.Type))
		}
		if !isDefaultProposal(p.Type) && !contains(custom, p.Type) {
			custom = append(custom, p.Type)
		}
		switch p.Type {
		case ProposalAdd:
			adds = append(adds, &p.Add.KeyPackage)
		case ProposalUpdate:
			l, ok := senderLeaf(sp.sender)
			if !ok {
				return nil, fmt.Errorf("%w: Update from a non-member", ErrInvalidProposal)
			}
			if external || (committer.Type == SenderMember && l == treemath.LeafIndex(committer.Index)) {
				return nil, fmt.Errorf("%w: commit includes the committer's own Update", ErrInvalidProposalList)
			}
			if err := touch(l); err != nil {
				return nil, err
			}
			updates = append(updates, sp)
		case ProposalRemove, ProposalSelfRemove:
			var l treemath.LeafIndex
			if p.Type == ProposalRemove {
				l = treemath.LeafIndex(p.Remove.Removed)
			} else {
				var ok bool
				if l, ok = senderLeaf(sp.sender); !ok {
					return nil, fmt.Errorf("%w: SelfRemove from a non-member", ErrInvalidProposal)
				}
			}
			if uint32(l) >= st.tree.LeafCount() || st.tree.Leaf(l) == nil {
				return nil, fmt.Errorf("%w: Remove of blank leaf %d", ErrInvalidProposal, l)
			}
			if committer.Type == SenderMember && l == treemath.LeafIndex(committer.Index) {
				return nil, fmt.Errorf("%w: commit removes the committer", ErrInvalidProposalList)
			}
			if err := touch(l); err != nil {
				return nil, err
			}
			removes = append(removes, l)
		case ProposalPSK:
			id := &p.PreSharedKey.PSK
			enc, err := Marshal(id)
			if err != nil {
				return nil, err
			}
			for _, prev := range pskIDs {
				if bytes.Equal(prev, enc) {
					return nil, fmt.Errorf("%w: PSK proposed twice", ErrInvalidProposalList)
				}
			}
			pskIDs = append(pskIDs, enc)
			if len(id.PSKNonce) != g.suite.Nh() {
				return nil, fmt.Errorf("%w: psk_nonce of %d bytes", ErrInvalidProposal, len(id.PSKNonce))
			}
			if id.Type == PSKResumption && id.Usage != ResumptionApplication {
				return nil, fmt.Errorf("%w: resumption PSK usage %d in a PreSharedKey proposal", ErrInvalidProposal, id.Usage)
			}
			s.psks = append(s.psks, *id)
		case ProposalReInit:
			if len(list) != 1 {
				return nil, fmt.Errorf("%w: ReInit with other proposals", ErrInvalidProposalList)
			}
			if p.ReInit.Version < st.ctx.Version {
				return nil, fmt.Errorf("%w: ReInit to an older version", ErrInvalidProposal)
			}
			s.reinit = p.ReInit
		case ProposalExternalInit:
			if !external {
				return nil, fmt.Errorf("%w: ExternalInit in a member's commit", ErrInvalidProposalList)
			}
			nExtInit++
			s.externalInit = p.ExternalInit
		case ProposalGroupContextExtensions:
			if gce != nil {
				return nil, fmt.Errorf("%w: several GroupContextExtensions proposals", ErrInvalidProposalList)
			}
			gce = p.GroupContextExtensions
		case ProposalAppDataUpdate:
			appUpdates = append(appUpdates, p.AppDataUpdate)
		}
	}
	if external {
		if nExtInit != 1 {
			return nil, fmt.Errorf("%w: external commit with %d ExternalInit proposals", ErrInvalidProposalList, nExtInit)
		}
		if len(removes) > 1 {
			return nil, fmt.Errorf("%w: external commit with %d Remove proposals", ErrInvalidProposalList, len(removes))
		}
	}

	// 1. GroupContextExtensions, then AppDataUpdate edits of the
	// app_data_dictionary it may have set.
	if gce != nil {
		if err := checkGroupExtensions(gce.Extensions); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidProposal, err)
		}
		s.ctx.Extensions = slices.Clone(gce.Extensions)
	}
	if len(appUpdates) > 0 {
		if err := applyAppDataUpdates(&s.ctx, appUpdates); err != nil {
			return nil, err
		}
	}
	// 2. Updates.
	for _, u := range updates {
		l := treemath.LeafIndex(u.sender.Index)
		ln := &u.proposal.Update.LeafNode
		if err := VerifyLeafNode(g.suite, ln, LeafNodeSourceUpdate, st.ctx.GroupID, uint32(l), g.leafRules()); err != nil {
			return nil, fmt.Errorf("%w: Update of leaf %d: %w", ErrInvalidProposal, l, err)
		}
		if err := g.validateCredential(CredentialCheck{Change: LeafUpdated, GroupID: st.ctx.GroupID, LeafIndex: uint32(l), Leaf: ln, Previous: st.tree.Leaf(l)}); err != nil {
			return nil, err
		}
		if l == st.myLeaf && committer.Type == SenderMember {
			s.myUpdateRef = u.ref
		}
		if err := s.tree.UpdateLeaf(l, ln); err != nil {
			return nil, err
		}
	}
	// 3. Removes.
	for _, l := range removes {
		if l == st.myLeaf {
			s.removedMe = true
		}
		if err := s.tree.RemoveLeaf(l); err != nil {
			return nil, err
		}
	}
	// A proposal type outside the default set must be supported by every
	// member the commit keeps (RFC 9420 section 12.1); members being
	// removed need not support it.
	for _, pt := range custom {
		if err := allSupport(s.tree, pt); err != nil {
			return nil, err
		}
	}
	// 4. Adds.
	addSigKeys := map[string]bool{}
	for _, kp := range adds {
		if err := VerifyKeyPackage(g.suite, kp, g.leafRules()); err != nil {
			return nil, fmt.Errorf("%w: Add: %w", ErrInvalidProposal, err)
		}
		if kp.CipherSuite != st.ctx.CipherSuite || kp.Version != st.ctx.Version {
			return nil, fmt.Errorf("%w: Add of a KeyPackage for another suite or version", ErrInvalidProposal)
		}
		if addSigKeys[string(kp.LeafNode.SignatureKey)] {
			return nil, fmt.Errorf("%w: two Adds for the same client", ErrInvalidProposalList)
		}
		addSigKeys[string(kp.LeafNode.SignatureKey)] = true
		ln := kp.LeafNode
		l := s.tree.AddLeaf(&ln)
		if err := g.validateCredential(CredentialCheck{Change: LeafAdded, GroupID: st.ctx.GroupID, LeafIndex: uint32(l), Leaf: &ln}); err != nil {
			return nil, err
		}
		s.added = append(s.added, l)
		s.addedKPs = append(s.addedKPs, kp)
	}
	fresh := slices.Clone(s.added)
	for _, u := range updates {
		fresh = append(fresh, treemath.LeafIndex(u.sender.Index))
	}
	if err := checkStagedLeaves(s, gce != nil || len(appUpdates) > 0, fresh); err != nil {
		return nil, err
	}
	return s, nil
}

// allSupport checks that every member lists proposal type pt in its
// capabilities, as a non-default type requires (RFC 9420 section 12.1).
func allSupport(t *Tree, pt ProposalType) error {
	for x := 0; x < len(t.nodes); x += 2 {
		if n := t.nodes[x]; n != nil && !contains(n.Leaf.Capabilities.Proposals, pt) {
			return fmt.Errorf("%w: proposal type 0x%04x not supported by leaf %d", ErrInvalidProposal, uint16(pt), x/2)
		}
	}
	return nil
}

// checkStagedLeaves runs the group-dependent leaf checks of RFC 9420
// section 7.3 on the staged tree for the leaves in fresh (added, updated,
// or the committer's new leaf): they support the GroupContext extensions
// and required capabilities, their encryption and signature keys appear
// nowhere else in the tree, they support every credential type in use and
// every member supports theirs. When the extensions changed, every leaf
// must support them. Unchanged leaves were checked when they arrived, so
// a commit costs O(n) comparisons without allocation.
func checkStagedLeaves(s *staged, extChanged bool, fresh []treemath.LeafIndex) error {
	required, _, err := s.ctx.Extensions.RequiredCapabilities()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidProposal, err)
	}
	t := s.tree
	check := fresh
	if extChanged {
		check = nil
		for l := uint32(0); l < t.leaves; l++ {
			if t.Leaf(treemath.LeafIndex(l)) != nil {
				check = append(check, treemath.LeafIndex(l))
			}
		}
	}
	for _, l := range check {
		if err := supportsGroup(t.Leaf(l), &s.ctx, &required); err != nil {
			return fmt.Errorf("%w: leaf %d: %w", ErrInvalidProposal, l, err)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	if err := t.checkUniqueKeys(fresh); err != nil {
		return err
	}
	var inUse []CredentialType
	for x := 0; x < len(t.nodes); x += 2 {
		if n := t.nodes[x]; n != nil && !contains(inUse, n.Leaf.Credential.Type) {
			inUse = append(inUse, n.Leaf.Credential.Type)
		}
	}
	var freshTypes []CredentialType
	for _, l := range fresh {
		ln := t.Leaf(l)
		for _, ct := range inUse {
			if !contains(ln.Capabilities.Credentials, ct) {
				return fmt.Errorf("%w: leaf %d does not support credential type 0x%04x in use", ErrInvalidProposal, l, uint16(ct))
			}
		}
		if !contains(freshTypes, ln.Credential.Type) {
			freshTypes = append(freshTypes, ln.Credential.Type)
		}
	}
	for x := 0; x < len(t.nodes); x += 2 {
		if n := t.nodes[x]; n != nil {
			for _, ct := range freshTypes {
				if !contains(n.Leaf.Capabilities.Credentials, ct) {
					return fmt.Errorf("%w: leaf %d does not support credential type 0x%04x", ErrInvalidProposal, x/2, uint16(ct))
				}
			}
		}
	}
	return nil
}

// checkUniqueKeys checks that the encryption and signature keys of the
// leaves in fresh appear in no other node. A few leaves are compared
// against every node directly; many (a large Add) go through maps.
func (t *Tree) checkUniqueKeys(fresh []treemath.LeafIndex) error {
	if len(fresh) <= 8 {
		for _, f := range fresh {
			fl := t.Leaf(f)
			for x, n := range t.nodes {
				switch {
				case n == nil || treemath.NodeIndex(x) == f.NodeIndex():
				case n.Parent != nil:
					if bytes.Equal(n.Parent.EncryptionKey, fl.EncryptionKey) {
						return fmt.Errorf("%w: encryption key of leaf %d already in the tree", ErrInvalidProposal, f)
					}
				default:
					if bytes.Equal(n.Leaf.EncryptionKey, fl.EncryptionKey) {
						return fmt.Errorf("%w: encryption key of leaf %d already in the tree", ErrInvalidProposal, f)
					}
					if bytes.Equal(n.Leaf.SignatureKey, fl.SignatureKey) {
						return fmt.Errorf("%w: signature key of leaf %d already in the group", ErrInvalidProposalList, f)
					}
				}
			}
		}
		return nil
	}
	sigKeys := make(map[string]bool, t.leaves)
	encKeys := make(map[string]bool, len(t.nodes))
	for x, n := range t.nodes {
		switch {
		case n == nil:
		case n.Parent != nil:
			if encKeys[string(n.Parent.EncryptionKey)] {
				return fmt.Errorf("%w: encryption key of node %d appears twice", ErrInvalidProposal, x)
			}
			encKeys[string(n.Parent.EncryptionKey)] = true
		default:
			if encKeys[string(n.Leaf.EncryptionKey)] {
				return fmt.Errorf("%w: encryption key of leaf %d appears twice", ErrInvalidProposal, x/2)
			}
			encKeys[string(n.Leaf.EncryptionKey)] = true
			if sigKeys[string(n.Leaf.SignatureKey)] {
				return fmt.Errorf("%w: signature key of leaf %d already in the group", ErrInvalidProposalList, x/2)
			}
			sigKeys[string(n.Leaf.SignatureKey)] = true
		}
	}
	return nil
}

// applyAppDataUpdates edits the app_data_dictionary extension of ctx as
// the AppDataUpdate proposals say, keeping it sorted by component id.
func applyAppDataUpdates(ctx *GroupContext, ups []*AppDataUpdate) error {
	dict, _, err := ctx.Extensions.AppDataDictionary()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidProposal, err)
	}
	seen := map[ComponentID]AppDataUpdateOp{}
	for _, u := range ups {
		if op, ok := seen[u.ComponentID]; ok && (op == AppDataOpRemove || u.Op == AppDataOpRemove) {
			return fmt.Errorf("%w: AppDataUpdate removes and updates component %d", ErrInvalidProposalList, u.ComponentID)
		}
		seen[u.ComponentID] = u.Op
		i, found := slices.BinarySearchFunc(dict.Components, u.ComponentID, func(c ComponentData, id ComponentID) int {
			return int(c.ComponentID) - int(id)
		})
		switch u.Op {
		case AppDataOpUpdate:
			if found {
				dict.Components[i].Data = u.Update
			} else {
				dict.Components = slices.Insert(dict.Components, i, ComponentData{ComponentID: u.ComponentID, Data: u.Update})
			}
		case AppDataOpRemove:
			if !found {
				return fmt.Errorf("%w: AppDataUpdate removes absent component %d", ErrInvalidProposal, u.ComponentID)
			}
			dict.Components = slices.Delete(dict.Components, i, i+1)
		}
	}
	ext, err := NewExtension(ExtAppDataDictionary, &dict)
	if err != nil {
		return err
	}
	for i := range ctx.Extensions {
		if ctx.Extensions[i].Type == ExtAppDataDictionary {
			ctx.Extensions[i] = ext
			return nil
		}
	}
	ctx.Extensions = append(ctx.Extensions, ext)
	return nil
}

// pskSecret resolves the PSKs named by ids and combines them (RFC 9420
// section 8.4).
func (g *Group) pskSecret(ids []PreSharedKeyID) ([]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	psks := make([]keyschedule.PSK, len(ids))
	for i := range ids {
		id := &ids[i]
		enc, err := Marshal(id)
		if err != nil {
			return nil, err
		}
		psks[i].ID = enc
		switch id.Type {
		case PSKExternal:
			sec, ok := g.externalPSKs[string(id.PSKID)]
			if !ok {
				return nil, fmt.Errorf("%w: external PSK %x", ErrUnknownPSK, id.PSKID)
			}
			psks[i].Secret = sec
		case PSKResumption:
			var sec []byte
			if g.st != nil && bytes.Equal(id.PSKGroupID, g.st.ctx.GroupID) {
				sec = g.resumption[id.PSKEpoch]
			}
			if sec == nil {
				return nil, fmt.Errorf("%w: resumption PSK of epoch %d", ErrUnknownPSK, id.PSKEpoch)
			}
			psks[i].Secret = sec
		}
	}
	return keyschedule.PSKSecret(g.suite, psks)
}
