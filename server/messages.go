package server

import (
	"encoding/json"
	"strconv"

	"github.com/nbd-wtf/go-nostr"
	"github.com/tidwall/gjson"
)

// Encoders for relay-to-client messages. Events are marshalled once per
// broadcast and the bytes shared by every subscriber.

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

func encodeClosed(subID, msg string) []byte {
	b := append([]byte(`["CLOSED",`), appendJSONString(nil, subID)...)
	b = append(b, ',')
	b = appendJSONString(b, msg)
	return append(b, ']')
}

func encodeEOSE(subID string) []byte {
	b := append([]byte(`["EOSE",`), appendJSONString(nil, subID)...)
	return append(b, ']')
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

// peekOversize extracts, from the kept prefix of an oversize message, the
// label and the EVENT id or subscription id, so the refusal can use the
// right message type.
func peekOversize(prefix []byte) (label, id string) {
	label = gjson.GetBytes(prefix, "0").String()
	switch label {
	case "EVENT":
		id = gjson.GetBytes(prefix, "1.id").String()
	case "REQ", "COUNT":
		id = gjson.GetBytes(prefix, "1").String()
	}
	return label, id
}
