package storetest

import (
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// RunOneEventChunks runs the cases about removals that work in chunks (a
// ban, a request to vanish) against a store that open configures to remove
// one event per chunk, so every chunk ends between twins: the twin rule's
// "ReasonTwin, unless the same operation removes it for its own reason"
// must hold across chunks, not only within one.
func RunOneEventChunks(t *testing.T, open Opener) {
	t.Run("a ban that ends a chunk between twins still removes both as banned", func(t *testing.T) { twinsDieOnBan(t, open) })
	t.Run("a request to vanish that ends a chunk between twins still removes both as vanished", func(t *testing.T) { twinsDieOnVanish(t, open) })
	t.Run("a request to vanish removes a twin dated after it as a twin", func(t *testing.T) {
		s := open(t)
		a := NewAuthor(t)
		ref := newRef()
		legacy := a.Event(t, 443, past(), nil, "the KeyPackage, as a legacy 443")
		mustSaveKP(t, s, legacy, kpFor(ref))
		req := a.Event(t, 62, past()+10, nostr.Tags{{"relay", "ALL_RELAYS"}}, "")
		current := a.Event(t, 30443, past()+20, nostr.Tags{{"d", "device"}}, "the KeyPackage, as a 30443 dated after the request")
		mustSaveKP(t, s, current, kpFor(ref))
		res := mustSave(t, s, req)
		equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{
			deletion(legacy, storage.ReasonVanish), deletion(current, storage.ReasonTwin)})
	})
}
