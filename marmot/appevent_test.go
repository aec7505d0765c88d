package marmot

import (
	"errors"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// TestAppEventSpecExample checks the id rule against the complete kind
// 1210 example of foundation/application-messages.md
// (marmot-protocol/marmot@27c1f50, "Group system events").
func TestAppEventSpecExample(t *testing.T) {
	const payload = `{"id":"126e47076e4d0a75ed260b279c33ed433acd764fc80e2de2e0315a64116d1f52","pubkey":"79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798","created_at":1700000000,"kind":1210,"tags":[["system","group_disbanded"]],"content":"{\"v\":1,\"system_type\":\"group_disbanded\",\"text\":\"Group disbanded\",\"data\":{\"actor\":\"79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798\"}}"}`
	e, err := ParseAppEvent([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := ParsePubkey(e.PubKey)
	again := NewAppEvent(pk, e.Kind, e.Tags, e.Content, e.CreatedAt)
	if again.ID != "126e47076e4d0a75ed260b279c33ed433acd764fc80e2de2e0315a64116d1f52" {
		t.Fatalf("id %s", again.ID)
	}
	b, err := again.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if back, err := ParseAppEvent(b); err != nil || back.ID != again.ID || back.Content != e.Content {
		t.Fatalf("round trip: %v", err)
	}
	if err := e.CheckAuthor(pk); err != nil {
		t.Fatal(err)
	}
	if err := e.CheckAuthor(Pubkey{1}); !errors.Is(err, ErrAppEventAuthor) {
		t.Fatalf("other sender: %v", err)
	}
}

func TestParseAppEventStrict(t *testing.T) {
	good := NewAppEvent(Pubkey{0xab, 0xcd}, KindChat, nostr.Tags{{"e", "x"}}, "hi", 1700000000)
	b, _ := good.Marshal()
	s := string(b)
	cases := map[string]string{
		"sig member":       strings.Replace(s, `"content"`, `"sig":"00","content"`, 1),
		"unknown member":   strings.Replace(s, `"content"`, `"v":1,"content"`, 1),
		"duplicate member": strings.Replace(s, `"content"`, `"kind":9,"content"`, 1),
		"missing tags":     strings.Replace(s, `"tags":[["e","x"]],`, ``, 1),
		"null tags":        strings.Replace(s, `[["e","x"]]`, `null`, 1),
		"wrong id":         strings.Replace(s, good.ID, strings.Repeat("0", 64), 1),
		"edited content":   strings.Replace(s, `"hi"`, `"ho"`, 1),
		"uppercase pubkey": strings.Replace(s, good.PubKey, strings.ToUpper(good.PubKey), 1),
		"kind as string":   strings.Replace(s, `"kind":9`, `"kind":"9"`, 1),
		"trailing data":    s + " {}",
		"array":            "[" + s + "]",
		"not json":         "hello",
	}
	for name, c := range cases {
		if _, err := ParseAppEvent([]byte(c)); !errors.Is(err, ErrAppEvent) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := ParseAppEvent(b); err != nil {
		t.Fatal(err)
	}
}
