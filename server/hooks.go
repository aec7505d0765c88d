package server

import (
	"context"
	"net/http"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// SaveHook stores the events of some kinds its own way: it checks them and
// calls the Store method that applies its extra rules in the same
// transaction (keypackages.Policy stores KeyPackages with SaveKeyPackage).
// The EVENT pipeline asks the hooks in Config.SaveHooks in order after the
// admission rules; the first that handles an event stores it, and events no
// hook handles go to Store.Save. Hooks keep the engine free of
// kind-specific rules: later ones (commit slots, say) join the same way.
type SaveHook interface {
	// Handles reports whether this hook stores ev.
	Handles(ev *nostr.Event) bool
	// Save checks ev and stores it in st. An error satisfying Refusal is
	// answered with its own OK message; Store sentinel errors are answered
	// as they are for Store.Save; anything else is "error:".
	Save(ctx context.Context, st storage.Store, ev *nostr.Event) (storage.Result, error)
}

// EnvelopeHook is implemented by SaveHooks whose events are envelopes:
// never stored or broadcast themselves, they carry another event that is
// (a commit-slot claim carries its kind 445 Commit). The server calls
// SaveEnvelope instead of Save for them, also for ephemeral kinds.
type EnvelopeHook interface {
	SaveHook
	// SaveEnvelope checks ev and stores what it carries.
	SaveEnvelope(ctx context.Context, st storage.Store, ev *nostr.Event) (Envelope, error)
}

// Envelope is what SaveEnvelope stored.
type Envelope struct {
	// Carried is the event to broadcast with Result.Seq (nil when nothing
	// new was stored, as for a retry).
	Carried *nostr.Event
	Result  storage.Result
	// OKMessage is the OK true message ("" for the default: "seq:<n>" when
	// Result.Seq > 0).
	OKMessage string
	// Releases is broadcast with Carried (Delivery.Releases).
	Releases *storage.Release
}

// ExtensionProvider is implemented by hooks that add protocol extensions
// to the NIP-11 "burrow_extensions" list (name/version strings).
type ExtensionProvider interface {
	Extensions() []string
}

// Refusal is an error a SaveHook returns to refuse an event with a specific
// NIP-01 OK message (which starts with a machine prefix such as "invalid:").
type Refusal interface {
	error
	OKMessage() string
}

// InfoProvider is implemented by hooks that describe their policy in the
// NIP-11 document, as one top-level field.
type InfoProvider interface {
	NIP11Field() (name string, value any)
}

// RouteProvider is implemented by hooks that serve HTTP endpoints (method
// and path patterns as http.ServeMux takes them) reading st.
type RouteProvider interface {
	Routes(st storage.Store) map[string]http.Handler
}

// saveHook returns the hook that stores ev, or nil for Store.Save.
func (s *Server) saveHook(ev *nostr.Event) SaveHook {
	for _, h := range s.cfg.SaveHooks {
		if h.Handles(ev) {
			return h
		}
	}
	return nil
}

// stored is what storing one EVENT did.
type stored struct {
	res       storage.Result
	broadcast *nostr.Event // what live subscribers get (nil: nothing new)
	okMessage string       // "" for the default
	releases  *storage.Release
}

// save stores ev through its hook or Store.Save.
func (s *Server) save(ctx context.Context, h SaveHook, ev *nostr.Event) (stored, error) {
	if eh, ok := h.(EnvelopeHook); ok {
		env, err := eh.SaveEnvelope(ctx, s.store, ev)
		return stored{res: env.Result, broadcast: env.Carried, okMessage: env.OKMessage, releases: env.Releases}, err
	}
	var res storage.Result
	var err error
	if h != nil {
		res, err = h.Save(ctx, s.store, ev)
	} else {
		res, err = s.store.Save(ctx, ev)
	}
	return stored{res: res, broadcast: ev}, err
}
