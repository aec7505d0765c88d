package ordering

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/burrow-relay/burrow/server"
	"github.com/burrow-relay/burrow/storage/sqlite"
)

// watchers returns how many subscriptions watch h.
func watchers(f *Fanout, h string) int {
	sh := f.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.watched[h]
}

// TestSubscriptionsWatchUntilTheyEnd: the server watches a group while a
// subscription that can match its group events is open, and unwatches it
// when the subscription is closed, replaced or its connection ends, so the
// fan-out keeps a position exactly as long as someone relies on it.
func TestSubscriptionsWatchUntilTheyEnd(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "relay.db"), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var f *Fanout
	srv, err := server.New(server.Config{
		BroadcastVia: func(local server.Broadcaster) (server.Broadcaster, server.GroupWatcher) {
			f, err = NewFanout(local, FanoutConfig{Log: store, Logger: logger})
			if err != nil {
				t.Fatal(err)
			}
			return f, f
		},
		Logger: logger,
	}, store)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = hs.Shutdown(sctx)
	}()
	c, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	send := func(msg string) {
		t.Helper()
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	want := func(what string, n int) {
		t.Helper()
		waitFor(t, what, func() bool { return watchers(f, gh) == n })
	}
	send(`["REQ","a",{"#h":["` + gh + `"]}]`)
	want("one watcher", 1)
	send(`["REQ","b",{"kinds":[445],"#h":["` + gh + `"],"since_seq":0}]`)
	want("two watchers", 2)
	send(`["REQ","c",{"kinds":[1],"#h":["` + gh + `"]}]`) // cannot match group events
	send(`["REQ","a",{"#h":["` + gh + `"],"limit":1}]`)   // replaces a
	time.Sleep(100 * time.Millisecond)
	want("still two after a replacement and a kind 1 subscription", 2)
	send(`["CLOSE","a"]`)
	want("one after CLOSE", 1)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	want("none after the connection ended", 0)
}
