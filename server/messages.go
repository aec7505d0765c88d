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
// not a JSON array starting with a string. The message is validated once
// (json.Valid) and split by splitArray rather than decoded into
// []json.RawMessage, which scanned it a second time and copied every
// element; the elements share one copy of msg (the reader reuses msg's
// buffer).
func parseClientMessage(msg []byte) (clientMessage, bool) {
	if !json.Valid(msg) {
		return clientMessage{}, false
	}
	arr, ok := splitArray(bytes.Clone(msg))
	if !ok || len(arr) == 0 {
		return clientMessage{}, false
	}
	var label string
	if err := json.Unmarshal(arr[0], &label); err != nil {
		return clientMessage{}, false
	}
	return clientMessage{label: label, args: arr[1:]}, true
}

// splitArray returns the elements of the JSON array msg, without the
// whitespace around them, as json.Unmarshal into []json.RawMessage would;
// false when msg is not an array. msg must be valid JSON (json.Valid).
func splitArray(msg []byte) ([]json.RawMessage, bool) {
	i := skipSpace(msg, 0)
	if i == len(msg) || msg[i] != '[' {
		return nil, false
	}
	i = skipSpace(msg, i+1)
	var arr []json.RawMessage
	if msg[i] == ']' {
		return arr, true
	}
	for {
		end := valueEnd(msg, i)
		arr = append(arr, json.RawMessage(msg[i:end:end]))
		i = skipSpace(msg, end)
		if msg[i] == ']' {
			return arr, true
		}
		i = skipSpace(msg, i+1) // past the comma
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value starting at b[i]; b
// is valid JSON.
func valueEnd(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '[', '{':
			depth++
		case ']', '}':
			if depth == 0 {
				return i // the end of the enclosing array
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return i
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
