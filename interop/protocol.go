package interop

// Argument and result shapes of the peer protocol (see interop/README.md).
// Call accepts any JSON-object value, so these are conveniences, not limits.

// Suite0001 is MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, the Marmot suite.
const Suite0001 uint16 = 0x0001

// Lifetime is a KeyPackage's validity window in Unix seconds.
type Lifetime struct {
	NotBefore uint64 `json:"not_before"`
	NotAfter  uint64 `json:"not_after"`
}

// CreateKeyPackageArgs asks for a KeyPackage with a BasicCredential. A nil
// Lifetime leaves the tool's default.
type CreateKeyPackageArgs struct {
	Identity Hex       `json:"identity"`
	Suite    uint16    `json:"suite"`
	Lifetime *Lifetime `json:"lifetime,omitempty"`
}

// KeyPackageResult is create_key_package's answer. KeyPackage is framed as an
// MLSMessage (wire format mls_key_package); KeyPackageBare is the inner struct
// over which KeyPackageRef is computed.
type KeyPackageResult struct {
	KeyPackage     Hex    `json:"key_package"`
	KeyPackageBare Hex    `json:"key_package_bare"`
	KeyPackageRef  Hex    `json:"key_package_ref"`
	NotBefore      Uint64 `json:"not_before"`
	NotAfter       Uint64 `json:"not_after"`
}

// CreateGroupArgs starts a one-member group at epoch 0.
type CreateGroupArgs struct {
	GroupID  Hex    `json:"group_id"`
	Identity Hex    `json:"identity"`
	Suite    uint16 `json:"suite"`
}

// AddMemberArgs adds the member behind a KeyPackage (bare or framed).
type AddMemberArgs struct {
	KeyPackage Hex `json:"key_package"`
}

// JoinArgs joins from a Welcome; RatchetTree is only for Welcomes whose
// GroupInfo lacks the ratchet_tree extension.
type JoinArgs struct {
	Welcome     Hex `json:"welcome"`
	RatchetTree Hex `json:"ratchet_tree,omitempty"`
}

// RemoveMemberArgs removes the member at a leaf.
type RemoveMemberArgs struct {
	LeafIndex uint32 `json:"leaf_index"`
}

// CommitResult answers add_member, commit_update and remove_member. The
// committer has already moved to Epoch; Welcome is set only when members were
// added.
type CommitResult struct {
	Commit  Hex    `json:"commit"`
	Welcome Hex    `json:"welcome,omitempty"`
	Epoch   uint64 `json:"epoch"`
}

// EpochResult answers create_group and join.
type EpochResult struct {
	Epoch uint64 `json:"epoch"`
}

// MessageArgs carries an MLSMessage to process.
type MessageArgs struct {
	Message Hex `json:"message"`
}

// ProcessResult answers process. Kind is "commit", "proposal" or
// "application"; Plaintext is set for application messages.
type ProcessResult struct {
	Kind      string `json:"kind"`
	Epoch     uint64 `json:"epoch"`
	Plaintext Hex    `json:"plaintext,omitempty"`
}

// ProtectArgs asks for an application message.
type ProtectArgs struct {
	Plaintext Hex `json:"plaintext"`
}

// ProtectResult is a PrivateMessage framed as an MLSMessage; it is also the
// answer to the propose_* ops (the proposal in the sender's handshake wire
// format).
type ProtectResult struct {
	Message Hex `json:"message"`
}

// ExportArgs calls MLS-Exporter(label, context, length).
type ExportArgs struct {
	Label   string `json:"label"`
	Context Hex    `json:"context"`
	Length  int    `json:"length"`
}

// ExportResult is the exported secret.
type ExportResult struct {
	Secret Hex `json:"secret"`
}

// ValueResult answers epoch_authenticator.
type ValueResult struct {
	Value Hex `json:"value"`
}

// Member is one occupied leaf.
type Member struct {
	LeafIndex uint32 `json:"leaf_index"`
	Identity  Hex    `json:"identity"`
}

// StateResult answers state.
type StateResult struct {
	Epoch        uint64   `json:"epoch"`
	Members      []Member `json:"members"`
	OwnLeafIndex uint32   `json:"own_leaf_index"`
}

// GroupInfoResult is a signed GroupInfo with the ratchet_tree extension,
// framed as an MLSMessage.
type GroupInfoResult struct {
	GroupInfo Hex `json:"group_info"`
}

// HelloResult names the library behind a peer.
type HelloResult struct {
	Tool string `json:"tool"`
}

// CommitArgs asks for a Commit of every proposal received this epoch (by
// reference) plus these by value. With Hold the committer does not apply it
// but waits for merge_pending or discard_pending (a commit race).
type CommitArgs struct {
	Add                 []Hex    `json:"add,omitempty"`
	Remove              []uint32 `json:"remove,omitempty"`
	ExternalPSKs        []Hex    `json:"external_psks,omitempty"`
	ResumptionPSKEpochs []uint64 `json:"resumption_psk_epochs,omitempty"`
	Hold                bool     `json:"hold,omitempty"`
	// PublicMessage frames the commit as a PublicMessage whatever the
	// committer's default (mls-go always does).
	PublicMessage bool `json:"public_message,omitempty"`
}

// ExternalJoinArgs joins by external commit from a GroupInfo (framed, with
// external_pub and ratchet_tree), with a fresh credential for Identity.
type ExternalJoinArgs struct {
	GroupInfo Hex `json:"group_info"`
	Identity  Hex `json:"identity"`
}

// ExternalPSKArgs registers an external PSK with the process, for every
// group it holds or joins later.
type ExternalPSKArgs struct {
	PSKID  Hex `json:"psk_id"`
	Secret Hex `json:"secret"`
}
