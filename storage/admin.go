package storage

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalid: an argument of an AdminState method is malformed (an id or
// pubkey that is not 64 lowercase hex characters, an invalid or IPv4-mapped
// address, an unknown setting, text that is not UTF-8, holds U+0000 or is
// longer than MaxAdminText). Nothing was written.
var ErrInvalid = errors.New("invalid argument")

// MaxAdminText bounds, in bytes, every reason and setting value an
// AdminState keeps.
const MaxAdminText = 4096

// Setting names a relay setting that admins change at run time (NIP-86
// changerelayname, changerelaydescription).
type Setting string

// The settings an AdminState keeps; any other is ErrInvalid.
const (
	SettingName        Setting = "name"
	SettingDescription Setting = "description"
)

// AdminRecord is one NIP-86 record: what was banned (an event id or a
// pubkey, 64 lowercase hex), why, and when the store recorded it.
type AdminRecord struct {
	Key    string
	Reason string
	At     time.Time
}

// BlockedIP is one blocked client address (NIP-86 blockip), why, and when
// the store recorded it. Addr is never IPv4-mapped IPv6.
type BlockedIP struct {
	Addr   netip.Addr
	Reason string
	At     time.Time
}

// AdminState keeps what relay admins decide through NIP-86 that is not an
// event rule of Store: the reasons given for banned events and pubkeys,
// the blocked client addresses and the settings admins changed. It lives in
// the store, so every process sharing the database reads the same records
// and they survive restarts. Lists are in ascending order of their key
// (event id, pubkey, address in netip.Addr.Compare order), so every process
// gives the same answer. Writes of the same key replace the earlier
// record. Times are the store's clock.
type AdminState interface {
	// RecordEventBan records that an admin banned event id, and why. The
	// event itself is deleted and tombstoned by Store.Delete.
	RecordEventBan(ctx context.Context, id, reason string) error
	// EventBans lists the recorded event bans.
	EventBans(ctx context.Context) ([]AdminRecord, error)

	// RecordPubKeyBan records why an admin banned pubkey. The ban itself
	// is Store.Ban's, and Store.BannedPubKeys lists the bans.
	RecordPubKeyBan(ctx context.Context, pubkey, reason string) error
	// PubKeyBans lists the recorded pubkey ban reasons.
	PubKeyBans(ctx context.Context) ([]AdminRecord, error)

	// BlockIP blocks addr, with a reason.
	BlockIP(ctx context.Context, addr netip.Addr, reason string) error
	// UnblockIP lifts the block of addr; unblocking an address that is not
	// blocked is not an error.
	UnblockIP(ctx context.Context, addr netip.Addr) error
	// BlockedIPs lists the blocked addresses.
	BlockedIPs(ctx context.Context) ([]BlockedIP, error)

	// SetSetting stores value for setting.
	SetSetting(ctx context.Context, setting Setting, value string) error
	// Settings returns every setting stored (one never set is absent).
	Settings(ctx context.Context) (map[Setting]string, error)
}

// CheckBan returns an ErrInvalid error unless key is 64 lowercase hex
// characters (an event id or pubkey, named by what in the message) and
// reason passes CheckAdminText.
func CheckBan(what, key, reason string) error {
	if len(key) != 64 || strings.IndexFunc(key, func(r rune) bool { return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') }) >= 0 {
		return fmt.Errorf("%s %q is not 64 lowercase hex characters: %w", what, key, ErrInvalid)
	}
	return CheckAdminText("reason", reason)
}

// CheckAdminText returns an ErrInvalid error unless s is UTF-8 without
// U+0000, at most MaxAdminText bytes; what names it in the message.
func CheckAdminText(what, s string) error {
	switch {
	case len(s) > MaxAdminText:
		return fmt.Errorf("%s is %d bytes, more than %d: %w", what, len(s), MaxAdminText, ErrInvalid)
	case !utf8.ValidString(s) || strings.ContainsRune(s, 0):
		return fmt.Errorf("%s is not UTF-8 text without U+0000: %w", what, ErrInvalid)
	}
	return nil
}

// CheckBlockedAddr returns an ErrInvalid error unless addr is a valid
// address that is not IPv4-mapped IPv6 (callers unmap first) and has no
// zone.
func CheckBlockedAddr(addr netip.Addr) error {
	if !addr.IsValid() || addr.Is4In6() || addr.Zone() != "" {
		return fmt.Errorf("address %q cannot be blocked (want a plain IPv4 or IPv6 address): %w", addr, ErrInvalid)
	}
	return nil
}

// CheckSetting returns an ErrInvalid error unless setting is one an
// AdminState keeps.
func CheckSetting(setting Setting) error {
	switch setting {
	case SettingName, SettingDescription:
		return nil
	}
	return fmt.Errorf("unknown setting %q: %w", setting, ErrInvalid)
}
