package redisbus

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"

	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

var (
	errFrame = errors.New("redisbus: bad frame")
	// errMAC: a version 3 frame whose MAC does not verify under the
	// deployment's key (forged, altered, or another deployment's).
	errMAC = errors.New("redisbus: frame not authenticated")
)

// Frame types of version 3.
const (
	typeEvent     = 0
	typeBeat      = 1
	typeDeletions = 2 // a count, then that many 32-byte event ids
)

// macLen is the length of the HMAC-SHA256 that ends a version 3 frame.
const macLen = sha256.Size

// frame is a decoded frame.
type frame struct {
	from [idLen]byte
	// num is the sender's frame number (version 3); 0 for older versions.
	num uint64
	// beat marks a heartbeat, which carries only its number.
	beat bool
	msg  Message
	// authed: a version 3 frame whose MAC verified. Older versions carry
	// none, so they decode but are never delivered.
	authed bool
}

// mac is the HMAC-SHA256 of body under key.
func mac(key, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return h.Sum(nil)
}

// appendHeader starts a version 3 frame.
func appendHeader(out []byte, typ byte, from [idLen]byte, num uint64) []byte {
	out = append(out, frameVersion, typ)
	out = append(out, from[:]...)
	return binary.AppendUvarint(out, num)
}

// encodeEvent builds the version 3 frame of m, number num of sender from,
// authenticated with key.
func encodeEvent(key []byte, from [idLen]byte, num uint64, m Message) ([]byte, error) {
	if m.Seq < 0 {
		return nil, fmt.Errorf("%w: negative seq", errFrame)
	}
	var released []byte
	if m.Releases != nil {
		b, err := hex.DecodeString(m.Releases.ID)
		if err != nil || len(b) != 32 || m.Releases.Seq <= 0 {
			return nil, fmt.Errorf("%w: release %+v", errFrame, *m.Releases)
		}
		released = b
	}
	ev, err := m.Event.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("redisbus: encode event: %w", err)
	}
	out := make([]byte, 0, 2+idLen+3*binary.MaxVarintLen64+len(released)+len(ev)+macLen)
	out = appendHeader(out, typeEvent, from, num)
	out = binary.AppendUvarint(out, uint64(m.Seq))
	if m.Releases == nil {
		out = binary.AppendUvarint(out, 0)
	} else {
		out = binary.AppendUvarint(out, uint64(m.Releases.Seq))
		out = append(out, released...)
	}
	out = append(out, ev...)
	return append(out, mac(key, out)...), nil
}

// encodeDeletions builds a deletion notice: the ids of events sender from
// deleted.
func encodeDeletions(key []byte, from [idLen]byte, num uint64, ids []string) ([]byte, error) {
	if len(ids) == 0 || len(ids) > MaxDeletedPerMessage {
		return nil, fmt.Errorf("%w: %d deleted ids", errFrame, len(ids))
	}
	out := make([]byte, 0, 2+idLen+2*binary.MaxVarintLen64+32*len(ids)+macLen)
	out = appendHeader(out, typeDeletions, from, num)
	out = binary.AppendUvarint(out, uint64(len(ids)))
	for _, id := range ids {
		b, err := hex.DecodeString(id)
		if err != nil || len(b) != 32 || !policy.IsLowerHex(id, 64) {
			return nil, fmt.Errorf("%w: deleted id %q", errFrame, id)
		}
		out = append(out, b...)
	}
	return append(out, mac(key, out)...), nil
}

// encodeBeat builds a heartbeat: number num of sender from, nothing else.
func encodeBeat(key []byte, from [idLen]byte, num uint64) []byte {
	out := appendHeader(make([]byte, 0, 2+idLen+binary.MaxVarintLen64+macLen), typeBeat, from, num)
	return append(out, mac(key, out)...)
}

// decode parses a frame. A version 3 frame must carry a valid MAC under
// key (errMAC otherwise); versions 1 and 2, which carry none, decode with
// authed false. Anything encode would not produce for a well-formed event
// is refused with errFrame.
func decode(key, p []byte) (frame, error) {
	var f frame
	if len(p) < 1 {
		return f, fmt.Errorf("%w: empty", errFrame)
	}
	version := p[0]
	rest := p[1:]
	switch version {
	case frameVersion:
		if len(rest) < 1+idLen+1+macLen {
			return f, fmt.Errorf("%w: %d bytes", errFrame, len(p))
		}
		body, sum := p[:len(p)-macLen], p[len(p)-macLen:]
		if !hmac.Equal(sum, mac(key, body)) {
			return f, errMAC
		}
		typ := rest[0]
		copy(f.from[:], rest[1:1+idLen])
		rest = body[2+idLen:]
		num, n := binary.Uvarint(rest)
		if n <= 0 || num == 0 {
			return f, fmt.Errorf("%w: frame number", errFrame)
		}
		f.num, f.authed, rest = num, true, rest[n:]
		switch typ {
		case typeBeat:
			if len(rest) != 0 {
				return f, fmt.Errorf("%w: heartbeat body", errFrame)
			}
			f.beat = true
			return f, nil
		case typeDeletions:
			count, n := binary.Uvarint(rest)
			if n <= 0 || count == 0 || count > MaxDeletedPerMessage || uint64(len(rest)-n) != 32*count {
				return f, fmt.Errorf("%w: deletion notice", errFrame)
			}
			rest = rest[n:]
			f.msg.Deleted = make([]string, count)
			for i := range f.msg.Deleted {
				f.msg.Deleted[i] = hex.EncodeToString(rest[32*i : 32*i+32])
			}
			return f, nil
		case typeEvent:
		default:
			return f, fmt.Errorf("%w: type %d", errFrame, typ)
		}
	case frameVersionV2, frameVersionV1:
		if len(rest) < idLen+1 {
			return f, fmt.Errorf("%w: %d bytes", errFrame, len(p))
		}
		copy(f.from[:], rest[:idLen])
		rest = rest[idLen:]
	default:
		return f, fmt.Errorf("%w: version %d", errFrame, version)
	}
	seq, n := binary.Uvarint(rest)
	if n <= 0 || seq > math.MaxInt64 {
		return f, fmt.Errorf("%w: seq", errFrame)
	}
	rest = rest[n:]
	if version != frameVersionV1 {
		relSeq, n := binary.Uvarint(rest)
		if n <= 0 || relSeq > math.MaxInt64 {
			return f, fmt.Errorf("%w: release seq", errFrame)
		}
		rest = rest[n:]
		if relSeq > 0 {
			if len(rest) < 32 {
				return f, fmt.Errorf("%w: release id", errFrame)
			}
			f.msg.Releases = &storage.Release{ID: hex.EncodeToString(rest[:32]), Seq: int64(relSeq)}
			rest = rest[32:]
		}
	}
	var ev nostr.Event
	if err := ev.UnmarshalJSON(rest); err != nil {
		return f, fmt.Errorf("%w: event: %w", errFrame, err)
	}
	if !policy.IsLowerHex(ev.ID, 64) || !policy.IsLowerHex(ev.PubKey, 64) || !policy.IsLowerHex(ev.Sig, 128) || !ev.CheckID() {
		return f, fmt.Errorf("%w: event id, pubkey or sig", errFrame)
	}
	f.msg.Event, f.msg.Seq = &ev, int64(seq)
	return f, nil
}
