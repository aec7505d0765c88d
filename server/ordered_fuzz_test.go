package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/burrow-relay/burrow/policy"
)

// FuzzParseOrderedRead feeds arbitrary filters to the since_seq parser: it
// never panics, answers either a cursor or an "invalid:" reason (or neither,
// for an ordinary filter), and a cursor it accepts is well-formed.
func FuzzParseOrderedRead(f *testing.F) {
	h := strings.Repeat("ab", 32)
	for _, seed := range []string{
		`{"#h":["` + h + `"],"since_seq":0}`,
		`{"#h":["` + h + `"],"since_seq":12,"kinds":[445],"limit":3}`,
		`{"#h":["` + h + `"],"since_seq":-1}`,
		`{"#h":["` + h + `","` + h + `"],"since_seq":1e3}`,
		`{"kinds":[1],"since_seq":null}`,
		`{"authors":["x"]}`,
		`[]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, filter []byte) {
		o, msg := parseOrderedRead([]json.RawMessage{filter}, 500)
		switch {
		case o != nil && msg != "":
			t.Fatalf("both a cursor and a refusal %q", msg)
		case msg != "" && !strings.HasPrefix(msg, "invalid:"):
			t.Fatalf("refusal %q lacks the invalid: prefix", msg)
		case o != nil && (!policy.IsGroupID(o.h) || o.after < 0 || o.limit < 0 || o.limit > 500):
			t.Fatalf("accepted a malformed cursor %+v", o)
		}
	})
}
