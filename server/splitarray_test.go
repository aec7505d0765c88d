package server

import (
	"encoding/json"
	"slices"
	"testing"
)

// splitArrayCases are client messages, valid and not, that parseClientMessage
// must treat as json.Unmarshal into []json.RawMessage did.
var splitArrayCases = []string{
	`[]`, ` [ ] `, `["EVENT"]`, `["EVENT",{"id":"x","tags":[["e","a,b]"],[]],"content":"q\"]}\\"}]`,
	" [\t\"REQ\" ,\n\"sub\" , {\"kinds\":[1, 2]} ,{}\r] ", `[1]`, `[null,"a"]`, `["a",1.5e3,true,false,null,-0]`,
	`["a\u0022b",["x"]]`, `{"a":1}`, `"EVENT"`, `null`, `[`, `["a",]`, `["a"`, `["a"]x`, `[["a"]]`,
	`["CLOSE","s"]`, `["\\",{"\\":"\\\""}]`, ``, ` `, `[  "x"  ,  [ ]  ,  { }  ]`,
}

func oldParseClientMessage(msg []byte) (clientMessage, bool) {
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

func checkParseClientMessage(t *testing.T, msg string) {
	want, wantOK := oldParseClientMessage([]byte(msg))
	got, gotOK := parseClientMessage([]byte(msg))
	if gotOK != wantOK || got.label != want.label ||
		!slices.EqualFunc(got.args, want.args, func(a, b json.RawMessage) bool { return string(a) == string(b) }) {
		t.Fatalf("%q: got %q %q %v, want %q %q %v", msg, got.label, got.args, gotOK, want.label, want.args, wantOK)
	}
}

// TestParseClientMessageAsUnmarshal: the one-pass split gives what decoding
// into []json.RawMessage gave.
func TestParseClientMessageAsUnmarshal(t *testing.T) {
	for _, msg := range splitArrayCases {
		checkParseClientMessage(t, msg)
	}
}

func FuzzParseClientMessage(f *testing.F) {
	for _, msg := range splitArrayCases {
		f.Add(msg)
	}
	f.Fuzz(checkParseClientMessage)
}

// TestAppendJSONString: the fast path writes what json.Marshal writes.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "abc", "seq:12", "duplicate: already have this event", `a"b`, `a\b`, "<>&", "é", "\x00\x1f\x7f", "\u2028", "invalid: bad signature"} {
		want, _ := json.Marshal(s)
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("%q: got %s, want x%s", s, got, want)
		}
	}
}
