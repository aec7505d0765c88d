package conformance

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// groupEvent builds a kind 445 the way Marmot clients do: a one-use key, one h tag, and
// base64 content of the given size in bytes before encoding.
func groupEvent(h string, size int) *nostr.Event {
	body := make([]byte, size)
	if _, err := rand.Read(body); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // cannot happen on supported platforms
	}
	return newKey().event(445, now(), nostr.Tags{{"h", h}}, base64.StdEncoding.EncodeToString(body))
}

func checkGroupEventByH(ctx context.Context, e *env) (string, error) {
	h := randomHex(32)
	ev := groupEvent(h, 64)
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	a, err := c.publish(ctx, ev)
	if err != nil {
		return "", err
	}
	if !a.ok {
		return "", fmt.Errorf("relay refused a kind 445 with one h tag: %s", a)
	}
	if err := e.expectExactly(ctx, "kinds [445] #h [group]",
		filters(nostr.Filter{Kinds: []int{445}, Tags: nostr.TagMap{"h": {h}}}), ev); err != nil {
		return "", err
	}
	if err := e.expectExactly(ctx, "#p [group id]", filters(nostr.Filter{Tags: nostr.TagMap{"p": {h}}})); err != nil {
		return "", err
	}
	if a.reason != "" {
		return "OK reason " + a.reason, nil
	}
	return "", nil
}

// pipelineCount is how many group events the ordering check sends without waiting.
const pipelineCount = 200

func checkPipelinedOrder(ctx context.Context, e *env) (string, error) {
	h := randomHex(32)
	sub, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer sub.close()
	if _, err := sub.subscribe(ctx, "group", nostr.Filter{Kinds: []int{445}, Tags: nostr.TagMap{"h": {h}}}); err != nil {
		return "", err
	}
	pub, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer pub.close()
	evs := make([]*nostr.Event, pipelineCount)
	for i := range evs {
		evs[i] = groupEvent(h, 96)
	}
	// Every frame goes out before any OK is read; the connection's reader buffers the OKs.
	for _, ev := range evs {
		if err := pub.sendRaw(ctx, eventFrame(ev)); err != nil {
			return "", err
		}
	}
	for i, ev := range evs {
		f, err := nextLabelled(ctx, pub, "OK")
		if err != nil {
			return "", fmt.Errorf("OK %d of %d: %w", i+1, len(evs), err)
		}
		id, a, err := parseOK(f)
		if err != nil {
			return "", err
		}
		if id != ev.ID {
			return "", fmt.Errorf("OK %d of %d is for event #%d: OKs are not in send order", i+1, len(evs), indexOf(evs, id)+1)
		}
		if !a.ok {
			return "", fmt.Errorf("event %d of %d refused: %s", i+1, len(evs), a)
		}
	}
	for i, ev := range evs {
		got, err := sub.nextEvent(ctx, "group")
		if err != nil {
			return "", fmt.Errorf("live event %d of %d: %w", i+1, len(evs), err)
		}
		if got.ID != ev.ID {
			return "", fmt.Errorf("live event %d of %d is event #%d: subscriber sees a different order", i+1, len(evs), indexOf(evs, got.ID)+1)
		}
	}
	return "", nil
}

func nextLabelled(ctx context.Context, c *conn, label string) (frame, error) {
	for {
		f, err := c.next(ctx)
		if err != nil {
			return f, err
		}
		if f.label == label {
			return f, nil
		}
	}
}

func indexOf(evs []*nostr.Event, id string) int {
	for i, ev := range evs {
		if ev.ID == id {
			return i
		}
	}
	return -2 // prints as #-1: an id the check never sent
}

// Slow-consumer parameters: enough bytes to fill the stalled reader's socket buffers and any
// per-connection queue a relay may hold (Burrow's holds at least 1,000 messages).
const (
	slowConsumerEvents  = 2000
	slowConsumerBytes   = 6000 // 8,000 characters of base64 per event, 16 MB in all
	slowConsumerOKBound = 2 * time.Second
)

func checkSlowConsumer(ctx context.Context, e *env) (string, error) {
	h := randomHex(32)
	stalled, err := e.dialWith(ctx, dialOptions{noRead: true, readBuffer: 4096})
	if err != nil {
		return "", err
	}
	defer stalled.close()
	if err := stalled.send(ctx, "REQ", "stalled", nostr.Filter{Kinds: []int{445}, Tags: nostr.TagMap{"h": {h}}}); err != nil {
		return "", err
	}
	// Read up to EOSE by hand, so the subscription is known to be live; then never read again.
	if err := readUntilEOSE(ctx, stalled.ws); err != nil {
		return "", err
	}

	pub, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer pub.close()
	var slowest time.Duration
	for i := 0; i < slowConsumerEvents; i++ {
		ev := groupEvent(h, slowConsumerBytes)
		okCtx, cancel := context.WithTimeout(ctx, slowConsumerOKBound)
		start := time.Now()
		a, err := pub.publish(okCtx, ev)
		took := time.Since(start)
		cancel()
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return "", fmt.Errorf("publisher stalled: no OK within %s for event %d of %d while a subscriber was not reading",
					slowConsumerOKBound, i+1, slowConsumerEvents)
			}
			return "", fmt.Errorf("event %d of %d: %w", i+1, slowConsumerEvents, err)
		}
		if !a.ok {
			return "", fmt.Errorf("event %d of %d refused: %s", i+1, slowConsumerEvents, a)
		}
		slowest = max(slowest, took)
	}
	return fmt.Sprintf("%d events of %d B, slowest OK %s", slowConsumerEvents, slowConsumerBytes*4/3,
		slowest.Round(time.Millisecond)), nil
}

func readUntilEOSE(ctx context.Context, ws *websocket.Conn) error {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(DefaultTimeout)
	}
	if err := ws.SetReadDeadline(dl); err != nil {
		return fmt.Errorf("set read deadline: %w", err)
	}
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return fmt.Errorf("no EOSE for the subscriber: %w", err)
		}
		var elems []json.RawMessage
		if json.Unmarshal(data, &elems) != nil || len(elems) == 0 {
			continue
		}
		var label string
		_ = json.Unmarshal(elems[0], &label)
		switch label {
		case "EOSE":
			return nil
		case "CLOSED":
			return fmt.Errorf("%w: %s", errClosed, data)
		}
	}
}
