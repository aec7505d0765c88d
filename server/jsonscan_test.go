package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// jsonValidCases exercise each rule of the grammar on both sides of it.
var jsonValidCases = []string{
	``, ` `, `0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e`, `1e+`, `1E-7`, `1e07`, `-01`, `2.0e+10`, `1x`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `nullnull`, `"`, `""`, `"a`, `"\"`, `"\\"`, `"\/"`,
	`"\u00e9"`, `"\u00g9"`, `"\u12"`, `"\x"`, "\"\x01\"", "\"\x7f\"", "\"\xff\xfe\"", "\"\t\"", `"é"`,
	`[`, `]`, `[]`, `[,]`, `[1,]`, `[1 2]`, `[1,,2]`, ` [ 1 , [ ] , { } ] `, `{}`, `{"a"}`, `{"a":}`,
	`{"a":1,}`, `{"a":1 "b":2}`, `{"a" : [1, {"b": null}]}`, `{1:2}`, `{"a":1}}`, `[[]`, `[]]`,
	"[\v]", "[\f]", "\ufeff[]", `["EVENT",{"id":"x","tags":[["e","a,b]"],[]],"content":"q\"]}\\"}]`,
	strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth),
	strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1),
	`[` + strings.Repeat(`{"a":`, maxJSONDepth-1) + `1` + strings.Repeat("}", maxJSONDepth-1) + `]`,
	`[` + strings.Repeat(`{"a":`, maxJSONDepth) + `1` + strings.Repeat("}", maxJSONDepth) + `]`,
}

func checkJSONScan(t *testing.T, msg string) {
	if got, want := jsonValid([]byte(msg)), json.Valid([]byte(msg)); got != want {
		t.Fatalf("%.80q: jsonValid %v, json.Valid %v", msg, got, want)
	}
	var want []json.RawMessage
	// An array, not null (which json.Unmarshal takes as a nil slice).
	wantOK := strings.HasPrefix(strings.TrimLeft(msg, " \t\r\n"), "[") && json.Unmarshal([]byte(msg), &want) == nil
	got, gotOK := splitValidArray([]byte(msg))
	if gotOK != wantOK || len(got) != len(want) {
		t.Fatalf("%.80q: split %d elements (%v), json.Unmarshal %d (%v)", msg, len(got), gotOK, len(want), wantOK)
	}
	for i := range got {
		if string(got[i]) != string(want[i]) {
			t.Fatalf("%.80q: element %d is %q, json.Unmarshal's %q", msg, i, got[i], want[i])
		}
	}
}

// TestJSONScanAsEncodingJSON: the one-pass scan accepts exactly what
// json.Valid accepts, and splits an array as json.Unmarshal into
// []json.RawMessage does.
func TestJSONScanAsEncodingJSON(t *testing.T) {
	for _, msg := range append(jsonValidCases, splitArrayCases...) {
		checkJSONScan(t, msg)
	}
}

func FuzzJSONScan(f *testing.F) {
	for _, msg := range append(jsonValidCases, splitArrayCases...) {
		if len(msg) < 1000 { // the nesting limits are left to the test
			f.Add(msg)
		}
	}
	f.Fuzz(checkJSONScan)
}

// BenchmarkParseClientMessage splits a typical EVENT (kind 1, 600 B
// content, three tags).
func BenchmarkParseClientMessage(b *testing.B) {
	ev := nostr.Event{Kind: 1, Content: strings.Repeat("c", 600), CreatedAt: nostr.Now(),
		Tags: nostr.Tags{{"t", "x"}, {"p", strings.Repeat("ab", 32)}, {"client", "bench"}}}
	if err := ev.Sign(nostr.GeneratePrivateKey()); err != nil {
		b.Fatal(err)
	}
	msg, _ := json.Marshal([]any{"EVENT", ev})
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if m, ok := parseClientMessage(msg); !ok || m.label != "EVENT" {
			b.Fatal("not split")
		}
	}
}
