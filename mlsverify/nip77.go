package mlsverify

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy/storage/vector"
)

// nip77Result is what one NIP-77 reconciliation found: the ids only the
// client holds (have), only the relay holds (need), and the NEG-MSG rounds
// it took.
type nip77Result struct {
	have, need []string
	rounds     int
}

// nip77FrameLimit bounds the harness's negentropy messages (binary; hex
// doubles them), well under common relay message limits.
const nip77FrameLimit = 60_000

// reconcileNIP77 runs a NIP-77 reconciliation of local against the relay's
// events matching f, on a connection of its own, as a Marmot client
// repairing a group's history does. A NEG-ERR, a NOTICE instead of an
// answer, or timeout without one fails it.
func reconcileNIP77(ctx context.Context, url string, f nostr.Filter, local []*nostr.Event, timeout time.Duration) (nip77Result, error) {
	d := websocket.Dialer{HandshakeTimeout: timeout}
	ws, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nip77Result{}, fmt.Errorf("connect: %w", err)
	}
	defer ws.Close()
	vec := vector.New()
	for _, ev := range local {
		vec.Insert(ev.CreatedAt, ev.ID)
	}
	vec.Seal()
	neg := negentropy.New(vec, nip77FrameLimit)
	var res nip77Result
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for id := range neg.Haves {
			res.have = append(res.have, id)
		}
	}()
	go func() {
		defer wg.Done()
		for id := range neg.HaveNots {
			res.need = append(res.need, id)
		}
	}()
	// negentropy closes the channels when the client's side is done; a
	// run that fails before closes them itself (nothing sends on them
	// after a failed round), so the collectors end.
	done := false
	defer func() {
		if !done {
			close(neg.Haves)
			close(neg.HaveNots)
			wg.Wait()
		}
	}()
	write := func(v ...any) error {
		b, _ := json.Marshal(v)
		return ws.WriteMessage(websocket.TextMessage, b)
	}
	const sub = "harness-nip77"
	if err := write("NEG-OPEN", sub, f, neg.Start()); err != nil {
		return nip77Result{}, err
	}
	for !done {
		_ = ws.SetReadDeadline(time.Now().Add(timeout))
		_, raw, err := ws.ReadMessage()
		if err != nil {
			return nip77Result{}, fmt.Errorf("no answer: %w", err)
		}
		var msg []json.RawMessage
		if json.Unmarshal(raw, &msg) != nil || len(msg) < 2 {
			continue
		}
		var label, id, body string
		_ = json.Unmarshal(msg[0], &label)
		_ = json.Unmarshal(msg[1], &id)
		if len(msg) > 2 {
			_ = json.Unmarshal(msg[2], &body)
		}
		switch {
		case label == "NOTICE":
			return nip77Result{}, fmt.Errorf("the relay answered NOTICE %q", id)
		case label == "NEG-ERR" && id == sub:
			return nip77Result{}, fmt.Errorf("the relay answered NEG-ERR %q", body)
		case label == "NEG-MSG" && id == sub:
			res.rounds++
			out, err := neg.Reconcile(body)
			if err != nil {
				return nip77Result{}, fmt.Errorf("the relay's message does not decode: %w", err)
			}
			if out == "" {
				done = true // the channels are closed
				break
			}
			if err := write("NEG-MSG", sub, out); err != nil {
				return nip77Result{}, err
			}
		}
	}
	_ = write("NEG-CLOSE", sub)
	wg.Wait()
	slices.Sort(res.have)
	slices.Sort(res.need)
	return res, nil
}
