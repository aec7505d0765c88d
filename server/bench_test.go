package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// BenchmarkPipelinedGroupEvents measures one connection pipelining presigned
// kind 445 events (fresh key each, 600 B content, one group) into SQLite,
// each answered with its seq; one live subscriber receives them all.
func BenchmarkPipelinedGroupEvents(b *testing.B) {
	r := startRelay(b, Config{}, newTestStore(b))
	pub, err := tryDial(r.url, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	sub, err := tryDial(r.url, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	group := strings.Repeat("9a", 32)
	req, _ := json.Marshal([]any{"REQ", "live", nostr.Filter{Kinds: []int{445}, LimitZero: true}})
	if err := sub.WriteMessage(websocket.TextMessage, req); err != nil {
		b.Fatal(err)
	}
	frames := make([][]byte, b.N)
	content := strings.Repeat("c", 600)
	for i := range frames {
		sk := nostr.GeneratePrivateKey()
		ev := nostr.Event{Kind: 445, Content: content, Tags: nostr.Tags{{"h", group}}, CreatedAt: nostr.Now()}
		if err := ev.Sign(sk); err != nil {
			b.Fatal(err)
		}
		frames[i], _ = json.Marshal([]any{"EVENT", ev})
	}
	received := make(chan error, 1)
	go func() {
		n := 0
		for n < b.N {
			_, msg, err := sub.ReadMessage()
			if err != nil {
				received <- err
				return
			}
			if strings.HasPrefix(string(msg), `["EVENT"`) {
				n++
			}
		}
		received <- nil
	}()
	b.ResetTimer()
	go func() {
		for _, f := range frames {
			if err := pub.WriteMessage(websocket.TextMessage, f); err != nil {
				return
			}
		}
	}()
	_, _, _ = pub.ReadMessage() // the AUTH challenge
	for i := range b.N {
		_, msg, err := pub.ReadMessage()
		if err != nil {
			b.Fatal(err)
		}
		var ok []any
		_ = json.Unmarshal(msg, &ok)
		if len(ok) != 4 || ok[0] != "OK" || ok[2] != true || ok[3] != fmt.Sprintf("seq:%d", i+1) {
			b.Fatalf("answer %d: %s", i, msg)
		}
	}
	if err := <-received; err != nil {
		b.Fatal(err)
	}
}
