package keyschedule

import (
	"fmt"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/codec"
)

// ConfirmedTranscriptHash is confirmed_transcript_hash_[n] =
// Hash(interim_transcript_hash_[n-1] || ConfirmedTranscriptHashInput_[n])
// (RFC 9420 section 8.2); confirmedInput is the encoded
// ConfirmedTranscriptHashInput (wire_format, FramedContent, signature), which
// package mls builds.
func ConfirmedTranscriptHash(s *cipher.Suite, interimBefore, confirmedInput []byte) []byte {
	h := s.NewHash()
	h.Write(interimBefore)
	h.Write(confirmedInput)
	return h.Sum(make([]byte, 0, s.Nh()))
}

// InterimTranscriptHash is interim_transcript_hash_[n] =
// Hash(confirmed_transcript_hash_[n] || InterimTranscriptHashInput_[n]),
// where InterimTranscriptHashInput is the confirmation tag as an opaque<V>.
func InterimTranscriptHash(s *cipher.Suite, confirmed, confirmationTag []byte) ([]byte, error) {
	if len(confirmationTag) > codec.MaxVarint {
		return nil, fmt.Errorf("mls/keyschedule: confirmation tag of %d bytes", len(confirmationTag))
	}
	var hdr [4]byte
	h := s.NewHash()
	h.Write(confirmed)
	h.Write(codec.AppendVarint(hdr[:0], uint64(len(confirmationTag))))
	h.Write(confirmationTag)
	return h.Sum(make([]byte, 0, s.Nh())), nil
}
