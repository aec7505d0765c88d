package server

import (
	"encoding/json"
	"strconv"

	"github.com/nbd-wtf/go-nostr"
	"github.com/tidwall/gjson"
)

// Encoders for relay-to-client messages. Events are marshalled once per
// broadcast and the bytes shared by every subscriber (see outMsg).

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

func encodeOK(id string, ok bool, msg string) []byte {
	b := make([]byte, 0, 100+len(msg))
	b = append(b, `["OK",`...)
	b = appendJSONString(b, id)
	b = append(b, ',')
	b = strconv.AppendBool(b, ok)
	b = append(b, ',')
	b = appendJSONString(b, msg)
	return append(b, ']')
}

func encodeNotice(msg string) []byte {
	b := append([]byte(`["NOTICE",`), appendJSONString(nil, msg)...)
	return append(b, ']')
}

func encodeClosed(subID, msg string) []byte { return encodeSubString("CLOSED", subID, msg) }

// encodeSubString is [<label>,<subID>,<s>]: CLOSED, and NIP-77's NEG-MSG
// and NEG-ERR.
func encodeSubString(label, subID, s string) []byte {
	b := append([]byte(`["`), label...)
	b = append(b, `",`...)
	b = appendJSONString(b, subID)
	b = append(b, ',')
	b = appendJSONString(b, s)
	return append(b, ']')
}

// EOSE hints (NIP-67): whether every stored match was sent. Every EOSE
// carries one.
const (
	eoseFinish = "finish" // every stored match was sent
	eoseMore   = "more"   // a limit (the filter's or the clamp) cut the stored matches short
)

// encodeEOSEHint is EOSE with a NIP-67 hint: ["EOSE",<sub>,[<hint>]].
func encodeEOSEHint(subID, hint string) []byte {
	b := append([]byte(`["EOSE",`), appendJSONString(nil, subID)...)
	b = append(b, `,[`...)
	b = appendJSONString(b, hint)
	return append(b, "]]"...)
}

func encodeCount(subID string, n int64) []byte {
	b := append([]byte(`["COUNT",`), appendJSONString(nil, subID)...)
	b = append(b, `,{"count":`...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "}]"...)
}

func encodeAuthChallenge(challenge string) []byte {
	b := append([]byte(`["AUTH",`), appendJSONString(nil, challenge)...)
	return append(b, ']')
}

// eventPrefix is `["EVENT",<subID>,` for one subscription.
func eventPrefix(subID string) []byte {
	b := append([]byte(`["EVENT",`), appendJSONString(nil, subID)...)
	return append(b, ',')
}

// eventSuffix ends an EVENT message after the event.
var eventSuffix = []byte("]")

func encodeEvent(prefix, eventJSON []byte) []byte {
	b := make([]byte, 0, len(prefix)+len(eventJSON)+1)
	b = append(b, prefix...)
	b = append(b, eventJSON...)
	return append(b, ']')
}

func marshalEvent(ev *nostr.Event) []byte {
	b, _ := ev.MarshalJSON() // easyjson on plain strings cannot fail
	return b
}

// clientMessage is a parsed client message: its label and raw elements.
type clientMessage struct {
	label string
	args  []json.RawMessage // elements after the label
}

// parseClientMessage splits a client message. It fails on anything that is
// not a JSON array starting with a string.
func parseClientMessage(msg []byte) (clientMessage, bool) {
	var arr []json.RawMessage
	if err := json.Unmarshal(msg, &arr); err != nil || len(arr) == 0 {
		return clientMessage{}, false
	}
	var label string
	if err := json.Unmarshal(arr[0], &label); err != nil {
		return clientMessage{}, false
	}
	return clientMessage{label: label, args: arr[1:]}, true
}

// peekMessage extracts, without parsing the whole message (which may be
// cut short, if it was oversize), its label and the EVENT or AUTH event id
// or the REQ, COUNT or NEG-* subscription id, so a refusal can use the right
// message type.
func peekMessage(msg []byte) (label, id string) {
	label = gjson.GetBytes(msg, "0").String()
	switch label {
	case "EVENT", "AUTH":
		id = gjson.GetBytes(msg, "1.id").String()
	case "REQ", "COUNT", "NEG-OPEN", "NEG-MSG":
		id = gjson.GetBytes(msg, "1").String()
	}
	return label, id
}
