package marmot

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/nbd-wtf/go-nostr"
)

// KindChat is the default Marmot chat message kind of an app payload.
const KindChat = 9

// maxAppEvent bounds an app payload the decoder reads.
const maxAppEvent = 1 << 20

// AppEvent is a Marmot app payload: a Nostr event without a signature,
// sent inside an MLS application message. Its id is the NIP-01 id of the
// other fields; MLS authenticates the sender, and the pubkey must be that
// sender's account.
type AppEvent struct {
	ID        string
	PubKey    string
	CreatedAt int64
	Kind      int
	Tags      nostr.Tags
	Content   string
}

// NewAppEvent makes an app payload by author and sets its id.
func NewAppEvent(author Pubkey, kind int, tags nostr.Tags, content string, createdAt int64) AppEvent {
	if tags == nil {
		tags = nostr.Tags{}
	}
	e := AppEvent{PubKey: author.Hex(), CreatedAt: createdAt, Kind: kind, Tags: tags, Content: content}
	e.ID = e.computeID()
	return e
}

func (e *AppEvent) nostrEvent() nostr.Event {
	return nostr.Event{PubKey: e.PubKey, CreatedAt: nostr.Timestamp(e.CreatedAt), Kind: e.Kind, Tags: e.Tags, Content: e.Content}
}

func (e *AppEvent) computeID() string {
	ev := e.nostrEvent()
	return ev.GetID()
}

// Marshal serializes the payload as one JSON object with exactly the
// members id, pubkey, created_at, kind, tags and content.
func (e AppEvent) Marshal() ([]byte, error) {
	tags := e.Tags
	if tags == nil {
		tags = nostr.Tags{}
	}
	return json.Marshal(struct {
		ID        string     `json:"id"`
		PubKey    string     `json:"pubkey"`
		CreatedAt int64      `json:"created_at"`
		Kind      int        `json:"kind"`
		Tags      nostr.Tags `json:"tags"`
		Content   string     `json:"content"`
	}{e.ID, e.PubKey, e.CreatedAt, e.Kind, tags, e.Content})
}

// ParseAppEvent decodes an app payload strictly: one JSON object with
// exactly the six members and nothing after it, no sig, no unknown or
// repeated member, a pubkey of 64 lowercase hex characters, and an id equal
// to the NIP-01 id of the other fields. Inner tags are not policed.
func ParseAppEvent(b []byte) (AppEvent, error) { return parseUnsigned(b, ErrAppEvent) }

// parseUnsigned is the strict decoder of an unsigned Nostr event (an app
// payload or a NIP-59 rumor); check is the sentinel its errors match.
func parseUnsigned(b []byte, check error) (AppEvent, error) {
	if len(b) > maxAppEvent {
		return AppEvent{}, fail(check, nil, "payload is %d bytes, at most %d read", len(b), maxAppEvent)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return AppEvent{}, fail(check, err, "payload is not a JSON object")
	}
	var e AppEvent
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return AppEvent{}, fail(check, err, "payload is not valid JSON")
		}
		key, _ := tok.(string)
		if seen[key] {
			return AppEvent{}, fail(check, nil, "member %s appears twice", quote(key))
		}
		seen[key] = true
		var target any
		switch key {
		case "id":
			target = &e.ID
		case "pubkey":
			target = &e.PubKey
		case "created_at":
			target = &e.CreatedAt
		case "kind":
			target = &e.Kind
		case "tags":
			target = &e.Tags
		case "content":
			target = &e.Content
		case "sig":
			return AppEvent{}, fail(check, nil, "payload carries a sig member; app payloads are unsigned")
		default:
			return AppEvent{}, fail(check, nil, "unknown member %s", quote(key))
		}
		if err := dec.Decode(target); err != nil {
			return AppEvent{}, fail(check, err, "member %s: %v", key, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return AppEvent{}, fail(check, err, "payload is not valid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return AppEvent{}, fail(check, nil, "data after the JSON object")
	}
	if len(seen) != 6 {
		return AppEvent{}, fail(check, nil, "payload has %d of the 6 members id, pubkey, created_at, kind, tags, content", len(seen))
	}
	if e.Tags == nil {
		return AppEvent{}, fail(check, nil, "tags is null, want an array")
	}
	for i, t := range e.Tags {
		if t == nil {
			return AppEvent{}, fail(check, nil, "tag %d is null", i)
		}
	}
	if _, err := ParsePubkey(e.PubKey); err != nil {
		return AppEvent{}, fail(check, err, "%v", err)
	}
	if id := e.computeID(); id != e.ID {
		return AppEvent{}, fail(check, nil, "id %s is not the NIP-01 id %s of the payload", quote(e.ID), id)
	}
	return e, nil
}

// CheckAuthor applies the receiver authentication rule: the payload's
// pubkey must be the account the MLS sender's leaf names.
func (e AppEvent) CheckAuthor(sender Pubkey) error {
	if e.PubKey != sender.Hex() {
		return fail(ErrAppEventAuthor, nil, "payload pubkey %s is not the sender's account %s", quote(e.PubKey), sender.Hex())
	}
	return nil
}
