package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

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

// BenchmarkPublishBesideHostileSubscriptions publishes kind 1 events with
// 2,000 "t" tags, one at a time, each waiting for its OK, beside 64
// connections (each from its own address, through a trusted proxy) that
// hold 100 subscriptions of 100 values each (the per-connection cap of
// 10,000 filter values), none of which any event matches. "alone" is the
// same publisher with no other connection, measured in the same run. It
// reports the OK latency's p50 and p99 (issue 14 goal: p99 at most 10 ms).
// Kind 1 is stored (SQLite, synchronous=full: each OK waits for an fsync);
// kind 20001 is ephemeral, so its OK waits for nothing but the relay.
func BenchmarkPublishBesideHostileSubscriptions(b *testing.B) {
	for _, tc := range []struct {
		kind    int
		hostile bool
	}{{20001, false}, {20001, true}, {1, false}, {1, true}} {
		name := fmt.Sprintf("kind=%d/alone", tc.kind)
		if tc.hostile {
			name = fmt.Sprintf("kind=%d/hostile=64x100", tc.kind)
		}
		hostile := tc.hostile
		b.Run(name, func(b *testing.B) {
			limits := testLimits()
			limits.EventRate, limits.EventBurst = 1e9, 1e9
			limits.ConnEventRate, limits.ConnEventBurst = 1e9, 1e9
			r := startRelay(b, Config{Limits: limits, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, newTestStore(b))
			if hostile {
				for i := range 64 {
					c, err := tryDial(r.url, http.Header{"X-Forwarded-For": {fmt.Sprintf("10.1.%d.1", i)}})
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					_, _, _ = c.ReadMessage() // AUTH challenge
					for j := range 100 {
						f := nostr.Filter{Kinds: []int{tc.kind}, Tags: nostr.TagMap{"t": make([]string, 0, 50)}}
						for k := range 49 {
							f.Authors = append(f.Authors, fmt.Sprintf("%064x", i*10000+j*100+k))
						}
						for k := range 50 {
							f.Tags["t"] = append(f.Tags["t"], fmt.Sprintf("never-%d-%d-%d", i, j, k))
						}
						req, _ := json.Marshal([]any{"REQ", fmt.Sprint(j), f})
						if err := c.WriteMessage(websocket.TextMessage, req); err != nil {
							b.Fatal(err)
						}
						if _, msg, err := c.ReadMessage(); err != nil || !strings.HasPrefix(string(msg), `["EOSE"`) {
							b.Fatalf("REQ %d on connection %d: %s %v", j, i, msg, err)
						}
					}
				}
			}
			pub, err := tryDial(r.url, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			_, _, _ = pub.ReadMessage()
			frames := make([][]byte, b.N)
			sk := nostr.GeneratePrivateKey()
			for i := range frames {
				ev := nostr.Event{Kind: tc.kind, Content: fmt.Sprint("event ", i), CreatedAt: nostr.Now()}
				for k := range 2000 {
					ev.Tags = append(ev.Tags, nostr.Tag{"t", fmt.Sprintf("popular-%d-%d", i, k)})
				}
				if err := ev.Sign(sk); err != nil {
					b.Fatal(err)
				}
				frames[i], _ = json.Marshal([]any{"EVENT", ev})
			}
			lat := make([]time.Duration, b.N)
			b.ResetTimer()
			for i, f := range frames {
				start := time.Now()
				if err := pub.WriteMessage(websocket.TextMessage, f); err != nil {
					b.Fatal(err)
				}
				_, msg, err := pub.ReadMessage()
				if err != nil || !strings.HasPrefix(string(msg), `["OK"`) || !strings.Contains(string(msg), "true") {
					b.Fatalf("answer %d: %s %v", i, msg, err)
				}
				lat[i] = time.Since(start)
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ms-p99")
		})
	}
}
