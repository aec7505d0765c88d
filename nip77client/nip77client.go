// Package nip77client is the client side of a NIP-77 (negentropy)
// reconciliation: it opens the session with NEG-OPEN, answers each NEG-MSG
// until the two sets are reconciled, closes it with NEG-CLOSE, and reports
// the ids only the client holds (have) and only the relay holds (need).
// relay sync and the harness's history-repair check reconcile through it,
// over the websocket adapter it also provides.
package nip77client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip77"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy/storage/vector"
)

// ErrTimeout is a Conn's read deadline passing.
var ErrTimeout = errors.New("no message before the deadline")

// Conn is a connection to a relay: Send writes one message, Read returns
// the next message's label and elements, waiting until deadline (then
// ErrTimeout).
type Conn interface {
	Send(msg []byte) error
	Read(deadline time.Time) (label string, frame []json.RawMessage, err error)
}

// RefusedError is the relay's NEG-ERR for the session.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the relay refused the reconciliation: %s", e.Reason)
}

// NoAnswerError is a relay that never answered NEG-OPEN: it does not speak
// NIP-77. Notice is the NOTICE it sent instead, if any.
type NoAnswerError struct {
	Notice string
	Waited time.Duration
}

func (e *NoAnswerError) Error() string {
	if e.Notice != "" {
		return fmt.Sprintf("NEG-OPEN was answered with NOTICE %q", e.Notice)
	}
	return fmt.Sprintf("NEG-OPEN was not answered within %v", e.Waited)
}

// noticeGrace is how long an answer is still awaited after a NOTICE: a
// relay without NIP-77 answers NEG-OPEN with a NOTICE (or nothing), but a
// NOTICE may also be a greeting sent just before the answer.
const noticeGrace = 2 * time.Second

// Session is one reconciliation's parameters.
type Session struct {
	Sub        string       // the subscription id
	Filter     nostr.Filter // the relay's side of the reconciliation
	FrameLimit int          // largest message this side sends, in bytes before hex
	Timeout    time.Duration
	// Have and Need, when set, are called with each id only this side
	// holds and only the relay holds, one call at a time, as the rounds
	// find them. Round, when set, is called before each round.
	Have, Need func(id string)
	Round      func()
}

// Run reconciles local against the relay's events matching s.Filter over
// c and returns the number of NEG-MSG rounds it took. It waits at most
// s.Timeout for each answer.
func (s Session) Run(ctx context.Context, c Conn, local *vector.Vector) (rounds int, err error) {
	neg := negentropy.New(local, s.FrameLimit)
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		haves, needs := neg.Haves, neg.HaveNots
		for haves != nil || needs != nil {
			select {
			case id, ok := <-haves:
				if !ok {
					haves = nil
				} else if s.Have != nil {
					s.Have(id)
				}
			case id, ok := <-needs:
				if !ok {
					needs = nil
				} else if s.Need != nil {
					s.Need(id)
				}
			}
		}
	}()
	done := false
	defer func() {
		if !done {
			// Reconcile closes the channels only when it finishes;
			// nothing sends on them after a failed round.
			close(neg.Haves)
			close(neg.HaveNots)
		}
		<-collected
	}()

	open, _ := nip77.OpenEnvelope{SubscriptionID: s.Sub, Filter: s.Filter, Message: neg.Start()}.MarshalJSON()
	if err := c.Send(open); err != nil {
		return 0, err
	}
	var notice string
	deadline := time.Now().Add(s.Timeout)
	for !done {
		if err := ctx.Err(); err != nil {
			return rounds, err
		}
		label, frame, err := c.Read(deadline)
		if err != nil {
			if errors.Is(err, ErrTimeout) && rounds == 0 {
				return 0, &NoAnswerError{Notice: notice, Waited: s.Timeout}
			}
			return rounds, err
		}
		switch label {
		case "NOTICE":
			if rounds == 0 && notice == "" {
				notice = FrameString(frame, 1)
				if soon := time.Now().Add(noticeGrace); soon.Before(deadline) {
					deadline = soon
				}
			}
			continue
		case "NEG-ERR":
			if FrameString(frame, 1) == s.Sub {
				return rounds, &RefusedError{Reason: FrameString(frame, 2)}
			}
			continue
		case "NEG-MSG":
			if FrameString(frame, 1) != s.Sub {
				continue
			}
		default:
			continue // AUTH challenges, and anything meant for others
		}
		rounds++
		if s.Round != nil {
			s.Round()
		}
		out, err := Round(neg, FrameString(frame, 2))
		if err != nil {
			return rounds, fmt.Errorf("the relay's negentropy message: %w", err)
		}
		if out == "" {
			done = true // Reconcile closed Haves and HaveNots
			break
		}
		msg, _ := nip77.MessageEnvelope{SubscriptionID: s.Sub, Message: out}.MarshalJSON()
		if err := c.Send(msg); err != nil {
			return rounds, err
		}
		deadline = time.Now().Add(s.Timeout)
	}
	<-collected
	closeMsg, _ := nip77.CloseEnvelope{SubscriptionID: s.Sub}.MarshalJSON()
	return rounds, c.Send(closeMsg)
}

// Round is one Reconcile, with a panic in go-nostr's decoder (hostile input
// it does not expect) made an error.
func Round(neg *negentropy.Negentropy, msg string) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed negentropy message: %v", r)
		}
	}()
	return neg.Reconcile(msg)
}

// FrameString is element i of a message as a string ("" if it is not one).
func FrameString(frame []json.RawMessage, i int) string {
	var s string
	if i < len(frame) {
		_ = json.Unmarshal(frame[i], &s)
	}
	return s
}

// WS is a Conn over a websocket. Its Read skips messages that are not a
// JSON array starting with a string.
type WS struct {
	c    *websocket.Conn
	url  string
	stop func() bool
}

// Dial connects to a relay; cancelling ctx ends any read or write in
// progress. readLimit bounds one incoming message.
func Dial(ctx context.Context, url string, header http.Header, timeout time.Duration, readLimit int64) (*WS, error) {
	d := websocket.Dialer{HandshakeTimeout: timeout}
	c, resp, err := d.DialContext(ctx, url, header)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", url, err)
	}
	c.SetReadLimit(readLimit)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	return &WS{c: c, url: url, stop: stop}, nil
}

// Close says goodbye and closes the connection.
func (w *WS) Close() {
	w.stop()
	w.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	w.c.Close()
}

// Send writes one text message, waiting at most 30 s.
func (w *WS) Send(msg []byte) error {
	w.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if err := w.c.WriteMessage(websocket.TextMessage, msg); err != nil {
		return fmt.Errorf("writing to %s: %w", w.url, err)
	}
	return nil
}

// Read returns the next message's label and elements.
func (w *WS) Read(deadline time.Time) (string, []json.RawMessage, error) {
	w.c.SetReadDeadline(deadline)
	for {
		_, data, err := w.c.ReadMessage()
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				return "", nil, ErrTimeout
			}
			return "", nil, fmt.Errorf("reading from %s: %w", w.url, err)
		}
		var frame []json.RawMessage
		var label string
		if json.Unmarshal(data, &frame) != nil || len(frame) == 0 || json.Unmarshal(frame[0], &label) != nil {
			continue
		}
		return label, frame, nil
	}
}
