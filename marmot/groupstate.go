package marmot

import (
	"slices"

	"github.com/burrow-relay/burrow/mls"
)

// GroupState is the Marmot state a group's GroupContext carries in its
// app_data_dictionary.
type GroupState struct {
	// Required lists the components every member must support (the
	// GroupContext's app_components entry).
	Required ComponentsList
	// Profile is the group profile; HasProfile says whether the group has
	// one (it is optional).
	Profile    GroupProfile
	HasProfile bool
	Admins     AdminPolicy
	Routing    NostrRouting
}

// ReadGroupState reads and checks the current profile's group state from
// GroupContext extensions: required_capabilities naming app_data_dictionary
// and AppDataUpdate; an app_data_dictionary in component order whose
// app_components list requires 0x8003 and 0x8009, with a valid admin
// policy and Nostr routing state, an optional valid profile, and no
// component that belongs elsewhere (0x8009 lives in leaves).
func ReadGroupState(ext mls.Extensions) (GroupState, error) {
	rc, found, err := ext.RequiredCapabilities()
	switch {
	case err != nil:
		return GroupState{}, fail(ErrGroupState, err, "required_capabilities: %v", err)
	case !found:
		return GroupState{}, fail(ErrGroupState, nil, "no required_capabilities extension")
	case !slices.Contains(rc.ExtensionTypes, mls.ExtAppDataDictionary):
		return GroupState{}, fail(ErrGroupState, nil, "required_capabilities does not require app_data_dictionary")
	case !slices.Contains(rc.ProposalTypes, mls.ProposalAppDataUpdate):
		return GroupState{}, fail(ErrGroupState, nil, "required_capabilities does not require AppDataUpdate")
	}
	dict, found, err := ext.AppDataDictionary()
	switch {
	case err != nil:
		return GroupState{}, fail(ErrGroupState, err, "app_data_dictionary: %v", err)
	case !found:
		return GroupState{}, fail(ErrGroupState, nil, "no app_data_dictionary extension")
	}
	var s GroupState
	list, ok := dict.Find(ComponentAppComponents)
	if !ok {
		return GroupState{}, fail(ErrGroupState, nil, "no required app_components list")
	}
	if s.Required, err = ParseComponentsList(list); err != nil {
		return GroupState{}, err
	}
	for _, id := range []mls.ComponentID{ComponentAdminPolicy, ComponentIdentityProof} {
		if !s.Required.Has(id) {
			return GroupState{}, fail(ErrGroupState, nil, "app_components does not require %s", componentName(id))
		}
	}
	if _, ok := dict.Find(ComponentIdentityProof); ok {
		return GroupState{}, fail(ErrGroupState, nil, "component 0x8009 is a leaf component, not group state")
	}
	data, ok := dict.Find(ComponentAdminPolicy)
	if !ok {
		return GroupState{}, fail(ErrGroupState, nil, "no admin policy")
	}
	if s.Admins, err = ParseAdminPolicy(data); err != nil {
		return GroupState{}, err
	}
	data, ok = dict.Find(ComponentNostrRouting)
	if !ok {
		return GroupState{}, fail(ErrGroupState, nil, "no Nostr routing state")
	}
	if s.Routing, err = ParseNostrRouting(data); err != nil {
		return GroupState{}, err
	}
	if data, ok := dict.Find(ComponentGroupProfile); ok {
		if s.Profile, err = ParseGroupProfile(data); err != nil {
			return GroupState{}, err
		}
		s.HasProfile = true
	}
	return s, nil
}

// groupExtensions builds a new group's GroupContext extensions.
func groupExtensions(s GroupState) (mls.Extensions, error) {
	admins, err := s.Admins.Marshal()
	if err != nil {
		return nil, err
	}
	routing, err := s.Routing.Marshal()
	if err != nil {
		return nil, err
	}
	entries := []mls.ComponentData{{ComponentID: ComponentAppComponents, Data: s.Required.Marshal()}}
	if s.HasProfile {
		profile, err := s.Profile.Marshal()
		if err != nil {
			return nil, err
		}
		entries = append(entries, mls.ComponentData{ComponentID: ComponentGroupProfile, Data: profile})
	}
	entries = append(entries,
		mls.ComponentData{ComponentID: ComponentAdminPolicy, Data: admins},
		mls.ComponentData{ComponentID: ComponentNostrRouting, Data: routing})
	dict, err := mls.NewExtension(mls.ExtAppDataDictionary, &mls.AppDataDictionary{Components: entries})
	if err != nil {
		return nil, err
	}
	rc, err := mls.NewExtension(mls.ExtRequiredCapabilities, &mls.RequiredCapabilities{
		ExtensionTypes: slices.Clone(profileExtensions),
		ProposalTypes:  slices.Clone(profileProposals),
	})
	if err != nil {
		return nil, err
	}
	return mls.Extensions{rc, dict}, nil
}

// checkComponentUpdate checks an AppDataUpdate proposal against the
// component rules: required components are never removed, updates decode
// as full valid states, and 0x8009 is never group state.
func checkComponentUpdate(s GroupState, u *mls.AppDataUpdate) error {
	if u.ComponentID == ComponentIdentityProof {
		return fail(ErrForbidden, nil, "component 0x8009 cannot be changed by AppDataUpdate")
	}
	if u.Op == mls.AppDataOpRemove {
		if u.ComponentID == ComponentAppComponents || s.Required.Has(u.ComponentID) || u.ComponentID == ComponentNostrRouting {
			return fail(ErrForbidden, nil, "component %s is required and cannot be removed", componentName(u.ComponentID))
		}
		return nil
	}
	var err error
	switch u.ComponentID {
	case ComponentAppComponents:
		var l ComponentsList
		if l, err = ParseComponentsList(u.Update); err == nil && (!l.Has(ComponentAdminPolicy) || !l.Has(ComponentIdentityProof)) {
			err = fail(ErrForbidden, nil, "app_components must keep requiring 0x8003 and 0x8009")
		}
	case ComponentGroupProfile:
		_, err = ParseGroupProfile(u.Update)
	case ComponentAdminPolicy:
		_, err = ParseAdminPolicy(u.Update)
	case ComponentNostrRouting:
		_, err = ParseNostrRouting(u.Update)
	}
	return err
}
