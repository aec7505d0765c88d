package nip77client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy/storage/vector"
)

// fakeRelay is a Conn whose relay side is scripted: answer turns each
// message the client sends into the frames the relay sends back. Read
// returns ErrTimeout when nothing is queued, as a deadline passing would.
type fakeRelay struct {
	answer func(label string, frame []json.RawMessage) [][]any
	queue  [][]json.RawMessage
	sent   []string // labels the client sent
}

func (r *fakeRelay) Send(msg []byte) error {
	var frame []json.RawMessage
	if err := json.Unmarshal(msg, &frame); err != nil {
		return fmt.Errorf("client sent non-JSON %q", msg)
	}
	label := FrameString(frame, 0)
	r.sent = append(r.sent, label)
	for _, out := range r.answer(label, frame) {
		b, _ := json.Marshal(out)
		var f []json.RawMessage
		_ = json.Unmarshal(b, &f)
		r.queue = append(r.queue, f)
	}
	return nil
}

func (r *fakeRelay) Read(time.Time) (string, []json.RawMessage, error) {
	if len(r.queue) == 0 {
		return "", nil, ErrTimeout
	}
	f := r.queue[0]
	r.queue = r.queue[1:]
	return FrameString(f, 0), f, nil
}

// keys makes n distinct event ids starting at first, created one second
// apart.
func keys(first, n int) *vector.Vector {
	v := vector.New()
	for i := first; i < first+n; i++ {
		v.Insert(nostr.Timestamp(1_700_000_000+i), fmt.Sprintf("%064x", i))
	}
	v.Seal()
	return v
}

func idRange(first, n int) []string {
	var out []string
	for i := first; i < first+n; i++ {
		out = append(out, fmt.Sprintf("%064x", i))
	}
	return out
}

// negentropyRelay answers NEG-OPEN and NEG-MSG with a real negentropy
// server over held, preceded by noise a client must skip (an AUTH
// challenge, a NEG-MSG of another subscription).
func negentropyRelay(held *vector.Vector, frameLimit int) func(string, []json.RawMessage) [][]any {
	srv := negentropy.New(held, frameLimit)
	return func(label string, frame []json.RawMessage) [][]any {
		var msg string
		switch label {
		case "NEG-OPEN":
			msg = FrameString(frame, 3)
		case "NEG-MSG":
			msg = FrameString(frame, 2)
		default:
			return nil
		}
		out, err := srv.Reconcile(msg)
		if err != nil {
			return [][]any{{"NEG-ERR", FrameString(frame, 1), "invalid: " + err.Error()}}
		}
		return [][]any{{"AUTH", "challenge"}, {"NEG-MSG", "someone-else", "6100"}, {"NEG-MSG", FrameString(frame, 1), out}}
	}
}

func TestRunReconciles(t *testing.T) {
	for _, tc := range []struct {
		name             string
		local, relay     [2]int // first id, count
		frameLimit       int
		wantHave, wantNd []string
		manyRounds       bool
	}{
		{name: "overlap", local: [2]int{0, 30}, relay: [2]int{20, 30}, frameLimit: 60_000,
			wantHave: idRange(0, 20), wantNd: idRange(30, 20)},
		{name: "equal sets", local: [2]int{0, 50}, relay: [2]int{0, 50}, frameLimit: 60_000},
		{name: "client empty", local: [2]int{0, 0}, relay: [2]int{0, 40}, frameLimit: 60_000, wantNd: idRange(0, 40)},
		// A small frame limit forces the sets across several rounds.
		{name: "many rounds", local: [2]int{0, 3000}, relay: [2]int{1000, 3000}, frameLimit: 4096,
			wantHave: idRange(0, 1000), wantNd: idRange(3000, 1000), manyRounds: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRelay{answer: negentropyRelay(keys(tc.relay[0], tc.relay[1]), tc.frameLimit)}
			var have, need []string
			s := Session{Sub: "s1", FrameLimit: tc.frameLimit, Timeout: time.Second,
				Have: func(id string) { have = append(have, id) },
				Need: func(id string) { need = append(need, id) }}
			rounds, err := s.Run(context.Background(), r, keys(tc.local[0], tc.local[1]))
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(have)
			slices.Sort(need)
			if !slices.Equal(have, tc.wantHave) || !slices.Equal(need, tc.wantNd) {
				t.Fatalf("have %d ids, need %d; want %d and %d", len(have), len(need), len(tc.wantHave), len(tc.wantNd))
			}
			if rounds < 1 || (tc.manyRounds && rounds < 2) {
				t.Fatalf("%d rounds", rounds)
			}
			if last := r.sent[len(r.sent)-1]; last != "NEG-CLOSE" || r.sent[0] != "NEG-OPEN" {
				t.Fatalf("client sent %v; want NEG-OPEN first and NEG-CLOSE last", r.sent)
			}
		})
	}
}

func TestRunFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(string, []json.RawMessage) [][]any
		check  func(error) bool
	}{
		{"silence", func(string, []json.RawMessage) [][]any { return nil },
			func(err error) bool {
				var e *NoAnswerError
				return errors.As(err, &e) && e.Notice == ""
			}},
		{"a NOTICE instead of an answer", func(string, []json.RawMessage) [][]any {
			return [][]any{{"NOTICE", "unknown message type NEG-OPEN"}}
		}, func(err error) bool {
			var e *NoAnswerError
			return errors.As(err, &e) && e.Notice == "unknown message type NEG-OPEN"
		}},
		{"NEG-ERR", func(_ string, f []json.RawMessage) [][]any {
			return [][]any{{"NEG-ERR", "other", "blocked: not for you"}, {"NEG-ERR", FrameString(f, 1), "blocked: too many"}}
		}, func(err error) bool {
			var e *RefusedError
			return errors.As(err, &e) && e.Reason == "blocked: too many"
		}},
		{"a malformed NEG-MSG", func(_ string, f []json.RawMessage) [][]any {
			return [][]any{{"NEG-MSG", FrameString(f, 1), "61ffffffffffffffffffff"}}
		}, func(err error) bool { return err != nil && strings.Contains(err.Error(), "negentropy message") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRelay{answer: tc.answer}
			s := Session{Sub: "s1", FrameLimit: 60_000, Timeout: time.Second}
			_, err := s.Run(context.Background(), r, keys(0, 10))
			if !tc.check(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := &fakeRelay{answer: negentropyRelay(keys(0, 10), 60_000)}
	_, err := Session{Sub: "s1", FrameLimit: 60_000, Timeout: time.Second}.Run(ctx, r, keys(5, 10))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
}
