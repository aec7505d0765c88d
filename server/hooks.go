package server

import (
	"context"
	"net/http"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// Hook is one kind-specific piece of the EVENT pipeline and what else it
// brings. Each capability is a field, set where the hook is wired
// (cmd/relay), so what a hook does is read there, never discovered at run
// time. The pipeline asks the hooks in Config.Hooks in order after the
// admission rules; the first that handles an event takes it, and events no
// hook handles go to Store.Save. Hooks keep the engine free of
// kind-specific rules (KeyPackages, commit slots).
type Hook struct {
	// Exactly one of Store and Envelope is set: Store stores the events it
	// handles; Envelope takes them as envelopes carrying another event.
	Store    SaveHook
	Envelope EnvelopeHook
	// NIP11, if set, adds one top-level field to the NIP-11 document.
	NIP11 InfoProvider
	// Extensions, if set, adds to NIP-11's supported_extensions.
	Extensions ExtensionProvider
	// Routes, if set, serves HTTP endpoints beside the relay.
	Routes RouteProvider
}

// handles reports whether h takes ev.
func (h *Hook) handles(ev *nostr.Event) bool {
	if h.Envelope != nil {
		return h.Envelope.Handles(ev)
	}
	return h.Store.Handles(ev)
}

// SaveHook stores the events of some kinds its own way: it checks them and
// calls the Store method that applies its extra rules in the same
// transaction (keypackages.Policy stores KeyPackages with SaveKeyPackage).
type SaveHook interface {
	// Handles reports whether this hook stores ev.
	Handles(ev *nostr.Event) bool
	// Save checks ev and stores it in st. An error satisfying Refusal is
	// answered with its own OK message; Store sentinel errors are answered
	// as they are for Store.Save; anything else is "error:".
	Save(ctx context.Context, st storage.Store, ev *nostr.Event) (storage.Result, error)
}

// EnvelopeHook takes events that are envelopes: never stored or broadcast
// themselves, they carry another event that is (a commit-slot claim
// carries its kind 445 Commit). Ephemeral kinds included.
type EnvelopeHook interface {
	// Handles reports whether ev is one of this hook's envelopes.
	Handles(ev *nostr.Event) bool
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

// ExtensionProvider adds protocol extensions to the NIP-11
// supported_extensions list (name/version strings).
type ExtensionProvider interface {
	Extensions() []string
}

// Refusal is an error a SaveHook returns to refuse an event with a specific
// NIP-01 OK message (which starts with a machine prefix such as "invalid:").
type Refusal interface {
	error
	OKMessage() string
}

// InfoProvider describes a hook's policy in the NIP-11 document, as one
// top-level field.
type InfoProvider interface {
	NIP11Field() (name string, value any)
}

// RouteProvider serves HTTP endpoints (method and path patterns as
// http.ServeMux takes them) reading st.
type RouteProvider interface {
	Routes(st storage.Store) map[string]http.Handler
}

// saveHook returns the hook that takes ev, or nil for Store.Save.
func (s *Server) saveHook(ev *nostr.Event) *Hook {
	for i := range s.cfg.Hooks {
		if h := &s.cfg.Hooks[i]; h.handles(ev) {
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
func (s *Server) save(ctx context.Context, h *Hook, ev *nostr.Event) (stored, error) {
	if h != nil && h.Envelope != nil {
		env, err := h.Envelope.SaveEnvelope(ctx, s.store, ev)
		return stored{res: env.Result, broadcast: env.Carried, okMessage: env.OKMessage, releases: env.Releases}, err
	}
	var res storage.Result
	var err error
	if h != nil {
		res, err = h.Store.Save(ctx, s.store, ev)
	} else {
		res, err = s.store.Save(ctx, ev)
	}
	return stored{res: res, broadcast: ev}, err
}
