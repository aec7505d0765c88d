package server

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/nbd-wtf/go-nostr"
	"github.com/tidwall/gjson"
)

// Encoders for relay-to-client messages. Events are marshalled once per
// broadcast and the bytes shared by every subscriber (see outMsg).

// appendJSONString appends s as json.Marshal encodes it. Strings of
// printable ASCII with nothing to escape (ids, most OK messages) are copied
// between quotes without a call to json.Marshal; anything else goes
// through it, so the bytes are json.Marshal's in every case.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
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
// not a JSON array starting with a string. One scan (splitValidArray)
// validates the message as json.Valid does and cuts it into its elements,
// as json.Unmarshal into []json.RawMessage would, without the copy of every
// element that made; the elements share one copy of msg (the reader reuses
// msg's buffer).
func parseClientMessage(msg []byte) (clientMessage, bool) {
	arr, ok := splitValidArray(bytes.Clone(msg))
	if !ok || len(arr) == 0 {
		return clientMessage{}, false
	}
	label, ok := knownLabel(arr[0])
	if !ok {
		if err := json.Unmarshal(arr[0], &label); err != nil {
			return clientMessage{}, false
		}
	}
	return clientMessage{label: label, args: arr[1:]}, true
}

// knownLabel returns the label a raw JSON string decodes to when it is one
// the relay understands written without escapes (the usual case), without
// decoding it.
func knownLabel(raw []byte) (string, bool) {
	switch string(raw) {
	case `"EVENT"`:
		return "EVENT", true
	case `"REQ"`:
		return "REQ", true
	case `"CLOSE"`:
		return "CLOSE", true
	case `"COUNT"`:
		return "COUNT", true
	case `"AUTH"`:
		return "AUTH", true
	case `"NEG-OPEN"`:
		return "NEG-OPEN", true
	case `"NEG-MSG"`:
		return "NEG-MSG", true
	case `"NEG-CLOSE"`:
		return "NEG-CLOSE", true
	}
	return "", false
}

// peekLabel extracts a message's label without parsing the whole message
// (which may be cut short, if it was oversize).
func peekLabel(msg []byte) string {
	return gjson.GetBytes(msg, "0").String()
}

// peekID extracts, as peekLabel does, the EVENT or AUTH event id or the
// REQ, COUNT or NEG-* subscription id, so a refusal can use the right
// message type. Only refusals need it, so it is not done for every message.
func peekID(msg []byte, label string) string {
	switch label {
	case "EVENT", "AUTH":
		return gjson.GetBytes(msg, "1.id").String()
	case "REQ", "COUNT", "NEG-OPEN", "NEG-MSG":
		return gjson.GetBytes(msg, "1").String()
	}
	return ""
}
