package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// presigned is one event ready to send: its id (to match the OK) and the whole EVENT frame.
type presigned struct {
	id    string
	frame []byte
}

// textAuthors is how many keys sign the kind 1 events; 445s each get a key of their own, as
// Marmot clients publish every group event under a one-use key.
const textAuthors = 16

// prepare signs every event of the run in parallel, before any timing starts.
func prepare(ctx context.Context, cfg Config) ([]presigned, error) {
	groups := make([]string, cfg.Groups)
	for i := range groups {
		groups[i] = randomHex(32)
	}
	authors := make([]string, textAuthors)
	for i := range authors {
		authors[i] = nostr.GeneratePrivateKey()
	}
	createdAt := nostr.Timestamp(time.Now().Unix())

	out := make([]presigned, cfg.Events)
	err := inParallel(ctx, cfg.Events, func(i int) error {
		evt := nostr.Event{CreatedAt: createdAt, Content: randomContent(cfg.ContentBytes)}
		sk := ""
		if cfg.OnlyGroupEvents || i%2 == 0 {
			evt.Kind = 445
			evt.Tags = nostr.Tags{{"h", groups[i%len(groups)]}}
			sk = nostr.GeneratePrivateKey()
		} else {
			evt.Kind = nostr.KindTextNote
			evt.Tags = nostr.Tags{}
			sk = authors[i%len(authors)]
		}
		if err := evt.Sign(sk); err != nil {
			return fmt.Errorf("sign event %d: %w", i, err)
		}
		body, err := evt.MarshalJSON()
		if err != nil {
			return fmt.Errorf("encode event %d: %w", i, err)
		}
		frame := make([]byte, 0, len(body)+12)
		frame = append(frame, `["EVENT",`...)
		frame = append(frame, body...)
		frame = append(frame, ']')
		out[i] = presigned{id: evt.ID, frame: frame}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// inParallel runs f(0) .. f(n-1) on GOMAXPROCS goroutines (signing is
// CPU-bound) and returns the first error, or ctx's once it ends.
func inParallel(ctx context.Context, n int, f func(i int) error) error {
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				err := ctx.Err()
				if err == nil {
					err = f(i)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// randomContent returns valid padded base64 of n characters rounded down to a multiple of 4 (at
// least 4), the shape of a kind 445 payload.
func randomContent(n int) string {
	raw := make([]byte, max(n/4, 1)*3)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails on supported platforms
	return base64.StdEncoding.EncodeToString(raw)
}

func randomHex(n int) string {
	raw := make([]byte, n)
	_, _ = rand.Read(raw)
	return hex.EncodeToString(raw)
}
