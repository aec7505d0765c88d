package keyschedule

import (
	"errors"
	"fmt"
	"math"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/codec"
)

// ErrTooManyPSKs is returned when more PSKs are given than PSKLabel's uint16
// count can carry.
var ErrTooManyPSKs = errors.New("mls/keyschedule: too many PSKs")

// PSKType values of PreSharedKeyID (RFC 9420 section 8.4).
const (
	PSKTypeExternal   uint8 = 1
	PSKTypeResumption uint8 = 2
)

// ResumptionPSKUsage values (RFC 9420 section 8.4).
const (
	ResumptionApplication uint8 = 1
	ResumptionReinit      uint8 = 2
	ResumptionBranch      uint8 = 3
)

// PSK is one pre-shared key injected into an epoch: the encoded
// PreSharedKeyID that names it and the key itself.
type PSK struct {
	ID     []byte
	Secret cipher.Secret
}

// ExternalPSKID encodes PreSharedKeyID{psktype = external, psk_id,
// psk_nonce}.
func ExternalPSKID(pskID, pskNonce []byte) ([]byte, error) {
	w := codec.NewWriter(3 + len(pskID) + len(pskNonce) + 8)
	w.U8(PSKTypeExternal)
	w.Opaque(pskID)
	w.Opaque(pskNonce)
	if err := w.Err(); err != nil {
		return nil, fmt.Errorf("mls/keyschedule: encode PreSharedKeyID: %w", err)
	}
	return w.Bytes(), nil
}

// ResumptionPSKID encodes PreSharedKeyID{psktype = resumption, usage,
// psk_group_id, psk_epoch, psk_nonce}.
func ResumptionPSKID(usage uint8, groupID []byte, epoch uint64, pskNonce []byte) ([]byte, error) {
	w := codec.NewWriter(20 + len(groupID) + len(pskNonce))
	w.U8(PSKTypeResumption)
	w.U8(usage)
	w.Opaque(groupID)
	w.U64(epoch)
	w.Opaque(pskNonce)
	if err := w.Err(); err != nil {
		return nil, fmt.Errorf("mls/keyschedule: encode PreSharedKeyID: %w", err)
	}
	return w.Bytes(), nil
}

// PSKSecret combines psks, in order, into psk_secret (RFC 9420 section
// 8.4). With no PSKs the result is the all-zero psk_secret.
func PSKSecret(s *cipher.Suite, psks []PSK) (cipher.Secret, error) {
	if len(psks) > math.MaxUint16 {
		return nil, fmt.Errorf("%w: %d", ErrTooManyPSKs, len(psks))
	}
	secret := cipher.Secret(zeros(s))
	for i, p := range psks {
		extracted, err := s.Extract(nil, p.Secret)
		if err != nil {
			secret.Zero()
			return nil, err
		}
		// PSKLabel = PreSharedKeyID id; uint16 index; uint16 count.
		label := make([]byte, 0, len(p.ID)+4)
		label = append(label, p.ID...)
		label = append(label, byte(i>>8), byte(i), byte(len(psks)>>8), byte(len(psks)))
		input, err := s.ExpandWithLabel(extracted, "derived psk", label, s.Nh())
		extracted.Zero()
		if err != nil {
			secret.Zero()
			return nil, err
		}
		next, err := s.Extract(input, secret)
		input.Zero()
		secret.Zero()
		if err != nil {
			return nil, err
		}
		secret = next
	}
	return secret, nil
}
