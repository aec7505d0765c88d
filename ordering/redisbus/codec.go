package redisbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/burrow-relay/burrow/policy"
	"github.com/nbd-wtf/go-nostr"
)

var errFrame = errors.New("redisbus: bad frame")

// encode builds the frame described in the package comment.
func encode(id [idLen]byte, m Message) ([]byte, error) {
	if m.Seq < 0 {
		return nil, fmt.Errorf("%w: negative seq", errFrame)
	}
	ev, err := m.Event.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("redisbus: encode event: %w", err)
	}
	out := make([]byte, 0, 1+idLen+binary.MaxVarintLen64+len(ev))
	out = append(out, frameVersion)
	out = append(out, id[:]...)
	out = binary.AppendUvarint(out, uint64(m.Seq))
	return append(out, ev...), nil
}

// decode parses a frame, refusing anything encode would not produce for a
// well-formed event.
func decode(p []byte) ([idLen]byte, Message, error) {
	var id [idLen]byte
	if len(p) < 1+idLen+1 {
		return id, Message{}, fmt.Errorf("%w: %d bytes", errFrame, len(p))
	}
	if p[0] != frameVersion {
		return id, Message{}, fmt.Errorf("%w: version %d", errFrame, p[0])
	}
	copy(id[:], p[1:1+idLen])
	seq, n := binary.Uvarint(p[1+idLen:])
	if n <= 0 || seq > math.MaxInt64 {
		return id, Message{}, fmt.Errorf("%w: seq", errFrame)
	}
	var ev nostr.Event
	if err := ev.UnmarshalJSON(p[1+idLen+n:]); err != nil {
		return id, Message{}, fmt.Errorf("%w: event: %w", errFrame, err)
	}
	if !policy.IsLowerHex(ev.ID, 64) || !policy.IsLowerHex(ev.PubKey, 64) || !policy.IsLowerHex(ev.Sig, 128) || !ev.CheckID() {
		return id, Message{}, fmt.Errorf("%w: event id, pubkey or sig", errFrame)
	}
	return id, Message{Event: &ev, Seq: int64(seq)}, nil
}
