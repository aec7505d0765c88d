package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// wsClient is a minimal NIP-01 client for these tests. go-nostr's Relay
// reports a publish as successful when the connection drops before the OK
// arrives, which would make a durability test believe in acknowledgements
// that never came; this client counts an event only on its own OK true.
type wsClient struct{ c *websocket.Conn }

func dial(ctx context.Context, url string) (*wsClient, error) {
	c, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	return &wsClient{c: c}, nil
}

func (w *wsClient) Close() error { return w.c.Close() }

// publish sends ev and waits for its OK; it returns whether the relay said
// true, its message, and an error if no OK arrived.
func (w *wsClient) publish(ev nostr.Event, timeout time.Duration) (bool, string, error) {
	msg, _ := json.Marshal([]any{"EVENT", ev})
	w.c.SetWriteDeadline(time.Now().Add(timeout))
	if err := w.c.WriteMessage(websocket.TextMessage, msg); err != nil {
		return false, "", err
	}
	w.c.SetReadDeadline(time.Now().Add(timeout))
	for {
		_, data, err := w.c.ReadMessage()
		if err != nil {
			return false, "", err
		}
		var frame []json.RawMessage
		if json.Unmarshal(data, &frame) != nil || len(frame) < 3 {
			continue
		}
		var typ, id string
		json.Unmarshal(frame[0], &typ)
		json.Unmarshal(frame[1], &id)
		if typ != "OK" || id != ev.ID {
			continue
		}
		var ok bool
		var reason string
		json.Unmarshal(frame[2], &ok)
		if len(frame) > 3 {
			json.Unmarshal(frame[3], &reason)
		}
		return ok, reason, nil
	}
}

// query runs one REQ, collects the stored events up to EOSE, and closes it.
func (w *wsClient) query(f nostr.Filter, timeout time.Duration) ([]nostr.Event, error) {
	sub := fmt.Sprintf("q%d", time.Now().UnixNano())
	evs, err := w.subscribe(sub, f, timeout)
	if err != nil {
		return nil, err
	}
	closeMsg, _ := json.Marshal([]any{"CLOSE", sub})
	return evs, w.c.WriteMessage(websocket.TextMessage, closeMsg)
}

// subscribe opens subscription sub and returns its stored events (up to
// EOSE), leaving it open for live events.
func (w *wsClient) subscribe(sub string, f nostr.Filter, timeout time.Duration) ([]nostr.Event, error) {
	msg, _ := json.Marshal([]any{"REQ", sub, f})
	w.c.SetWriteDeadline(time.Now().Add(timeout))
	if err := w.c.WriteMessage(websocket.TextMessage, msg); err != nil {
		return nil, err
	}
	var out []nostr.Event
	for {
		typ, ev, reason, err := w.next(sub, time.Now().Add(timeout))
		if err != nil {
			return nil, err
		}
		switch typ {
		case "EVENT":
			out = append(out, ev)
		case "EOSE":
			return out, nil
		case "CLOSED":
			return nil, fmt.Errorf("subscription %s closed: %s", sub, reason)
		}
	}
}

// liveEvents collects what subscription sub delivers within d.
func (w *wsClient) liveEvents(sub string, d time.Duration) []nostr.Event {
	var out []nostr.Event
	deadline := time.Now().Add(d)
	for {
		typ, ev, _, err := w.next(sub, deadline)
		if err != nil {
			return out // the deadline passed (or the connection ended)
		}
		if typ == "EVENT" {
			out = append(out, ev)
		}
	}
}

// next reads frames until one for sub arrives, returning its type and, for
// EVENT, the event, or for CLOSED, the reason.
func (w *wsClient) next(sub string, deadline time.Time) (typ string, ev nostr.Event, reason string, err error) {
	w.c.SetReadDeadline(deadline)
	for {
		_, data, err := w.c.ReadMessage()
		if err != nil {
			return "", ev, "", err
		}
		var frame []json.RawMessage
		if json.Unmarshal(data, &frame) != nil || len(frame) < 2 {
			continue
		}
		var id string
		json.Unmarshal(frame[0], &typ)
		json.Unmarshal(frame[1], &id)
		if id != sub {
			continue
		}
		switch {
		case typ == "EVENT" && (len(frame) < 3 || json.Unmarshal(frame[2], &ev) != nil):
			return "", ev, "", fmt.Errorf("bad EVENT frame %s", data)
		case typ == "CLOSED" && len(frame) > 2:
			json.Unmarshal(frame[2], &reason)
		}
		return typ, ev, reason, nil
	}
}
