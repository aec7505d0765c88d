package mlsverify

import (
	"context"
	"slices"
	"time"

	"github.com/burrow-relay/burrow/nip77client"
	"github.com/nbd-wtf/go-nostr"
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
// repairing a group's history does.
func reconcileNIP77(ctx context.Context, url string, f nostr.Filter, local []*nostr.Event, timeout time.Duration) (nip77Result, error) {
	ws, err := nip77client.Dial(ctx, url, nil, timeout, 16<<20)
	if err != nil {
		return nip77Result{}, err
	}
	defer ws.Close()
	vec := vector.New()
	for _, ev := range local {
		vec.Insert(ev.CreatedAt, ev.ID)
	}
	vec.Seal()
	var res nip77Result
	sess := nip77client.Session{
		Sub: "harness-nip77", Filter: f, FrameLimit: nip77FrameLimit, Timeout: timeout,
		Have: func(id string) { res.have = append(res.have, id) },
		Need: func(id string) { res.need = append(res.need, id) },
	}
	if res.rounds, err = sess.Run(ctx, ws, vec); err != nil {
		return nip77Result{}, err
	}
	slices.Sort(res.have)
	slices.Sort(res.need)
	return res, nil
}
