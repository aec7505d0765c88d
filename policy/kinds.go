package policy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/nbd-wtf/go-nostr"
)

// marmotKinds lists, sorted, the kinds a Marmot deployment needs: profiles,
// deletions, vanish requests, KeyPackages (legacy and current), group events,
// gift wraps, relay lists and commit-slot claims.
func marmotKinds() []int {
	return []int{0, 5, 62, 443, 445, 1059, 10002, 10050, 10051, 20445, 30443}
}

// Kinds is the allowed-kinds setting. The zero value allows every kind.
type Kinds struct {
	name    string
	allowed []int // sorted; nil means all
}

// AllKinds allows every kind.
func AllKinds() Kinds { return Kinds{name: "all"} }

// MarmotOnly allows only the kinds a Marmot deployment needs.
func MarmotOnly() Kinds { return Kinds{name: "marmot", allowed: marmotKinds()} }

// ParseKinds reads the --kinds setting: "all" or "marmot".
func ParseKinds(s string) (Kinds, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "all":
		return AllKinds(), nil
	case "marmot":
		return MarmotOnly(), nil
	}
	return Kinds{}, fmt.Errorf("unknown kinds setting %q (want \"all\" or \"marmot\")", s)
}

// String returns the setting's name ("all" or "marmot").
func (k Kinds) String() string {
	if k.name == "" {
		return "all"
	}
	return k.name
}

// Restricted reports whether some kinds are refused (NIP-11
// restricted_writes).
func (k Kinds) Restricted() bool { return k.allowed != nil }

// List returns the allowed kinds, or nil when every kind is allowed.
func (k Kinds) List() []int { return slices.Clone(k.allowed) }

// Allows reports whether kind may be published.
func (k Kinds) Allows(kind int) bool {
	if k.allowed == nil {
		return true
	}
	_, found := slices.BinarySearch(k.allowed, kind)
	return found
}

// Rule refuses kinds the setting does not allow, with "blocked:".
func (k Kinds) Rule() Rule {
	return func(_ context.Context, ev *nostr.Event) (bool, string) {
		if k.Allows(ev.Kind) {
			return false, ""
		}
		return true, fmt.Sprintf("blocked: kind %d is not accepted by this relay", ev.Kind)
	}
}
