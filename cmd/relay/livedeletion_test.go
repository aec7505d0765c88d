package main

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/nbd-wtf/go-nostr"
)

// pausableProxy forwards TCP connections to target; while paused it holds
// what it has read, in both directions, and forwards it on resume (a slow
// network path, not a broken one).
type pausableProxy struct {
	addr   string
	mu     sync.Mutex
	paused bool
	resume chan struct{}
	open   []net.Conn
}

func startProxy(t *testing.T, target string) *pausableProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pausableProxy{addr: ln.Addr().String(), resume: make(chan struct{})}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.Resume()
		p.mu.Lock()
		for _, c := range p.open {
			c.Close()
		}
		p.mu.Unlock()
		conns.Wait()
	})
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.open = append(p.open, in, out)
			p.mu.Unlock()
			conns.Add(2)
			go func() { defer conns.Done(); p.pipe(out, in) }()
			go func() { defer conns.Done(); p.pipe(in, out) }()
		}
	}()
	return p
}

func (p *pausableProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			wait := p.resume
			paused := p.paused
			p.mu.Unlock()
			if paused {
				<-wait
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *pausableProxy) Pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
}

func (p *pausableProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		p.paused = false
		close(p.resume)
		p.resume = make(chan struct{})
	}
}

// TestKeyPackageCopyInFlightNotDeliveredAcrossInstances (issue 9 item 3):
// two relays on one PostgreSQL and one Redis; instance b's path to Redis
// is held while the author publishes a KeyPackage on instance a and then
// replaces it there. When b's path resumes, the copy of the first version
// is still in flight to b, after the replacement's OK: b's live subscriber
// must get the replacement and never the first version.
func TestKeyPackageCopyInFlightNotDeliveredAcrossInstances(t *testing.T) {
	redisURL := testsvc.Redis(t)
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, u.Host)
	viaProxy := *u
	viaProxy.Host = proxy.addr
	db := testsvc.Postgres(t).URL
	start := func(redis string) string {
		c, err := parseServeConfig([]string{"--listen", "127.0.0.1:0", "--database-url", db, "--redis-url", redis}, env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return startInProcess(t, c)
	}
	a, b := start(redisURL), start(viaProxy.String())

	au := newAuthor(t)
	first := au.slotEvent(t, slotID(0), nostr.Now()-5)
	second := au.slotEvent(t, slotID(0), nostr.Now())
	sub := mustDial(t, b)
	if stored, err := sub.subscribe("kp", nostr.Filter{Kinds: []int{30443}, Authors: []string{au.pk}}, testTimeout); err != nil || len(stored) != 0 {
		t.Fatalf("subscribe: %v, %d stored", err, len(stored))
	}
	pub := mustDial(t, a)
	proxy.Pause()
	for _, ev := range []nostr.Event{first, second} {
		if ok, msg, err := pub.publish(ev, testTimeout); err != nil || !ok {
			t.Fatalf("publish: ok=%v %q %v", ok, msg, err)
		}
	}
	time.Sleep(200 * time.Millisecond) // both copies are on their way to b
	proxy.Resume()
	got := map[string]bool{}
	for _, ev := range sub.liveEvents("kp", 3*time.Second) {
		got[ev.ID] = true
	}
	if got[first.ID] {
		t.Fatal("instance b delivered the first version after its replacement's OK")
	}
	if !got[second.ID] {
		t.Fatal("instance b never delivered the replacement")
	}
}
