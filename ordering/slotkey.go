package ordering

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/policy"
)

// Exporter inputs of the slot key: MLS-Exporter(SlotExporterLabel,
// SlotExporterContext, SlotSecretLen) of the epoch a Commit is built on.
// The context is the two ASCII bytes "v1".
const (
	SlotExporterLabel   = "nostr-commit-slot"
	SlotExporterContext = "v1"
	SlotSecretLen       = 32
)

// KindCommitClaim is the ephemeral event kind of a commit-slot claim.
const KindCommitClaim = policy.KindSlotClaim

var (
	// ErrSecretLength means the exporter secret is not SlotSecretLen bytes.
	ErrSecretLength = errors.New("ordering: exporter secret must be 32 bytes")
	// ErrZeroKey means the exporter secret is 0 mod n, which is no
	// secp256k1 private key (probability about 2^-255 for a real exporter).
	ErrZeroKey = errors.New("ordering: exporter secret is 0 mod the secp256k1 order")
)

// SlotKey derives the commit-slot signing key and the slot from an epoch's
// exporter secret x (see SlotExporterLabel): sk = x mod n, read as a 256-bit
// big-endian integer, and slot = the lowercase hex of sk's BIP-340 x-only
// public key, which is the pubkey of a kind 20445 claim.
func SlotKey(exporterSecret []byte) (sk *btcec.PrivateKey, slot string, err error) {
	if len(exporterSecret) != SlotSecretLen {
		return nil, "", fmt.Errorf("%w: got %d", ErrSecretLength, len(exporterSecret))
	}
	var s btcec.ModNScalar
	s.SetByteSlice(exporterSecret) // reduces mod n; overflow is allowed by the spec
	if s.IsZero() {
		return nil, "", ErrZeroKey
	}
	sk = btcec.PrivKeyFromScalar(&s)
	return sk, hex.EncodeToString(schnorr.SerializePubKey(sk.PubKey())), nil
}

// SlotOf derives the slot key of group's current epoch, the epoch a Commit
// built now would be built on.
func SlotOf(group *mls.Group) (sk *btcec.PrivateKey, slot string, err error) {
	x, err := group.Export(SlotExporterLabel, []byte(SlotExporterContext), SlotSecretLen)
	if err != nil {
		return nil, "", fmt.Errorf("ordering: slot exporter: %w", err)
	}
	return SlotKey(x)
}
