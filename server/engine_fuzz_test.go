package server

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy/storage/vector"
)

// FuzzEngine drives the websocket engine of an in-process relay with
// random sequences of valid and invalid frames (issue 14 item 11). The
// input is frames separated by newlines; a frame "@x" is replaced by one of
// a set of valid messages chosen by the byte x (signed EVENTs of several
// kinds, REQ, COUNT, CLOSE, AUTH with the connection's challenge, NEG-*),
// anything else is sent as it is. After each input the connection is
// closed, and the relay must have dropped it with every goroutine it
// started, and its heap must stay bounded. A panic anywhere fails the run.
func FuzzEngine(f *testing.F) {
	limits := testLimits()
	limits.MaxMessageLength = 64 << 10
	limits.MaxContentLength = 8 << 10
	limits.MaxGroupContentLength = 8 << 10
	r := startRelay(f, Config{Limits: limits, Negentropy: true}, newTestStore(f))
	s := signer{sk: strings.Repeat("01", 32)}
	s.pk, _ = nostr.GetPublicKey(s.sk)
	sign := func(kind int, content string, tags nostr.Tags) []byte {
		ev := nostr.Event{Kind: kind, Content: content, Tags: tags, CreatedAt: nostr.Now()}
		if ev.Tags == nil {
			ev.Tags = nostr.Tags{}
		}
		_ = ev.Sign(s.sk)
		b, _ := json.Marshal([]any{"EVENT", ev})
		return b
	}
	h := strings.Repeat("ab", 32)
	templates := [][]byte{
		sign(1, "note", nil),
		sign(445, groupContent("fuzz"), nostr.Tags{{"h", h}}),
		sign(1059, "wrap", nostr.Tags{{"p", s.pk}}),
		sign(5, "", nostr.Tags{{"e", strings.Repeat("cd", 32)}}),
		sign(30443, "kp", nostr.Tags{{"d", "slot"}}),
		sign(20001, "ephemeral", nil),
		sign(62, "", nostr.Tags{{"relay", "wss://elsewhere.example"}}),
		[]byte(`["REQ","s",{"kinds":[1,445,1059]}]`),
		[]byte(`["REQ","o",{"#h":["` + h + `"],"since_seq":0,"limit":3}]`),
		[]byte(`["REQ","w",{"kinds":[1059]}]`),
		[]byte(`["COUNT","c",{"kinds":[1]},{}]`),
		[]byte(`["CLOSE","s"]`),
		nil, // AUTH: built with the connection's challenge
		[]byte(`["NEG-OPEN","n",{"kinds":[1]},"` + negentropy.New(vector.New(), 0).Start() + `"]`),
		[]byte(`["NEG-MSG","n","` + negStartFor(f, 40) + `"]`),
		[]byte(`["NEG-CLOSE","n"]`),
	}
	for _, seed := range []string{
		"@\x00\n@\x07\n@\x0b",
		"@\x0c\n@\x09\n@\x02\n@\x0a",
		"@\x01\n@\x08\n@\x04\n@\x03",
		`["EVENT",{"id":"zz"}]` + "\n" + `["REQ"]` + "\n[]\n\xff\xfe",
		`["REQ","x",{"ids":[]},{"authors":[]},{"#t":[]}]` + "\n@\x0d\n@\x0e\n@\x0f",
		`["AUTH",{}]` + "\n" + `["COUNT","c",{"kinds":[1059]}]` + "\n@\x05\n@\x06",
	} {
		f.Add([]byte(seed))
	}
	baseline := runtime.NumGoroutine()
	f.Fuzz(func(t *testing.T, script []byte) {
		c, err := tryDial(r.url, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		challenge := make(chan string, 1)
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			for first := true; ; first = false {
				_, b, err := c.ReadMessage()
				if err != nil {
					return
				}
				if first {
					var m []string
					_ = json.Unmarshal(b, &m)
					if len(m) == 2 {
						challenge <- m[1]
					}
				}
			}
		}()
		var ch string
		select {
		case ch = <-challenge:
		case <-readDone:
			t.Fatal("the relay closed the connection before its AUTH challenge")
		}
		for i, frame := range bytes.Split(script, []byte{'\n'}) {
			if i == 32 {
				break
			}
			if len(frame) == 2 && frame[0] == '@' {
				k := int(frame[1]) % len(templates)
				frame = templates[k]
				if frame == nil {
					auth := s.event(t, 22242, "", nostr.Tags{{"relay", r.url}, {"challenge", ch}}, 0)
					frame, _ = json.Marshal([]any{"AUTH", auth})
				}
			}
			if err := c.WriteMessage(websocket.TextMessage, frame); err != nil {
				break
			}
		}
		_ = c.Close()
		<-readDone
		open := func() int {
			r.srv.conns.mu.Lock()
			defer r.srv.conns.mu.Unlock()
			return len(r.srv.conns.m)
		}
		deadline := time.Now().Add(5 * time.Second)
		for open() > 0 || runtime.NumGoroutine() > baseline+10 {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections and %d goroutines after the connection closed (%d goroutines before)",
					open(), runtime.NumGoroutine(), baseline)
			}
			time.Sleep(200 * time.Microsecond)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > 512<<20 {
			t.Fatalf("heap at %d MiB", ms.HeapAlloc>>20)
		}
	})
}
