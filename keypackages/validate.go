package keypackages

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/marmot"
	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
)

// KeyPackage event kinds.
const (
	// KindKeyPackage is the current, addressable KeyPackage kind (one d slot
	// per device).
	KindKeyPackage = marmot.KindKeyPackage
	// KindLegacyKeyPackage is the KeyPackage kind clients used before 2026-05.
	KindLegacyKeyPackage = marmot.KindLegacyKeyPackage
)

// IsKeyPackageKind reports whether kind is 443 or 30443.
func IsKeyPackageKind(kind int) bool { return marmot.IsKeyPackageKind(kind) }

const (
	// DefaultGrace is how far outside its lifetime a KeyPackage is still
	// accepted, for clock skew between the client and the relay.
	DefaultGrace = time.Hour
	// DefaultMaxLifetime caps not_after - not_before on current-profile
	// events: Marmot's 84 days plus one hour (7,261,200 s).
	DefaultMaxLifetime = 84*24*time.Hour + time.Hour
)

// Validator checks KeyPackage events on ingest. The zero value is ready to
// use with the defaults. It holds no state and is safe for concurrent use.
type Validator struct {
	// Now is the clock lifetimes are checked against; nil means time.Now.
	Now func() time.Time
	// Grace is how far outside [not_before, not_after] the clock may be;
	// zero means DefaultGrace and a negative value means none.
	Grace time.Duration
	// MaxLifetime bounds not_after - not_before on current-profile events
	// (those with an app_components tag); zero means DefaultMaxLifetime
	// and a negative value means no bound.
	MaxLifetime time.Duration
}

// Info is what validation learned that later KeyPackage rules need.
type Info struct {
	Kind int
	// Ref is the KeyPackageRef of the inner KeyPackage, lowercase hex: the
	// value of a correct i tag, and the key that matches a 443 and a 30443
	// twin carrying the same KeyPackage.
	Ref         string
	CipherSuite cipher.CipherSuite
	// NotBefore and NotAfter are the leaf node's lifetime in Unix seconds
	// (uint64 on the wire: ts-mls's default not_after is 2^63-1).
	NotBefore, NotAfter uint64
	// Slot is the d tag of a kind 30443, empty for kind 443.
	Slot string
	// LastResort is set when the KeyPackage is marked last resort: the
	// last_resort extension (0x000a), or component 0x0004 in an
	// app_data_dictionary extension.
	LastResort bool
	// CurrentProfile is set when the event carries an app_components tag;
	// only such events are held to the lifetime cap.
	CurrentProfile bool
	// Framed is set when the content is an MLSMessage framing the
	// KeyPackage rather than a bare KeyPackage.
	Framed bool
	// KeyPackage is the decoded inner KeyPackage; its Bytes are what the
	// ref was computed over.
	KeyPackage *mls.KeyPackage
}

func (v Validator) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}

func (v Validator) grace() time.Duration {
	switch {
	case v.Grace == 0:
		return DefaultGrace
	case v.Grace < 0:
		return 0
	}
	return v.Grace
}

func (v Validator) maxLifetime() time.Duration {
	switch {
	case v.MaxLifetime == 0:
		return DefaultMaxLifetime
	case v.MaxLifetime < 0:
		return 0
	}
	return v.MaxLifetime
}

// Rule is Validate in khatru's admission hook shape: it refuses a kind 443
// or 30443 event that fails validation with "invalid: <reason>" and lets
// every other kind through.
func (v Validator) Rule() func(ctx context.Context, ev *nostr.Event) (reject bool, msg string) {
	return func(_ context.Context, ev *nostr.Event) (bool, string) {
		if !IsKeyPackageKind(ev.Kind) {
			return false, ""
		}
		if _, err := v.Validate(ev); err != nil {
			return true, Message(err)
		}
		return false, ""
	}
}

// Validate checks a kind 443 or 30443 event and returns what later rules
// need. The event's shape (content, framing, tags, credential, signatures,
// KeyPackageRef) is read by marmot.ParseKeyPackageEvent, the one parser of
// KeyPackage events; what is left here is the relay's own rule, the
// lifetime window with its grace and, on current-profile events, the cap.
// Every failure is an *Error matching one of the Err* sentinels. The tags
// relays, client, mls_protocol_version, mls_extensions, mls_proposals and
// app_components are neither required nor compared with the KeyPackage;
// app_components is read only to choose the lifetime rule.
func (v Validator) Validate(ev *nostr.Event) (Info, error) {
	kp, err := marmot.ParseKeyPackageEvent(ev)
	if err != nil {
		if e, ok := errors.AsType[*marmot.Error](err); ok {
			return Info{}, &Error{Check: e.Check, Reason: e.Reason, Err: e.Err}
		}
		return Info{}, err
	}
	if err := v.checkLifetime(kp.KeyPackage.LeafNode.Lifetime, kp.CurrentProfile); err != nil {
		return Info{}, err
	}
	return Info{
		Kind: kp.Kind, Ref: kp.Ref, CipherSuite: kp.CipherSuite,
		NotBefore: kp.NotBefore, NotAfter: kp.NotAfter, Slot: kp.Slot,
		LastResort: kp.LastResort, CurrentProfile: kp.CurrentProfile, Framed: kp.Framed,
		KeyPackage: kp.KeyPackage,
	}, nil
}

func (v Validator) checkLifetime(lt mls.Lifetime, current bool) error {
	now := v.now().Unix()
	grace := int64(v.grace() / time.Second)
	// An inverted lifetime never gets here: the parser refuses it.
	if late := now + grace; late < 0 || uint64(late) < lt.NotBefore {
		return fail(ErrLifetime, nil, "KeyPackage is not valid until %s, more than %v from now", unixText(lt.NotBefore), v.grace())
	}
	if early := now - grace; early > 0 && uint64(early) > lt.NotAfter {
		return fail(ErrLifetime, nil, "KeyPackage expired at %s, more than %v ago", unixText(lt.NotAfter), v.grace())
	}
	if limit := v.maxLifetime(); current && limit > 0 {
		span := lt.NotAfter - lt.NotBefore
		if maxSpan := uint64(limit / time.Second); span > maxSpan {
			return fail(ErrLifetime, nil, "lifetime lasts %d s, more than the %d s (%s) allowed on events with app_components", span, maxSpan, days(limit))
		}
	}
	return nil
}

// days shows a long duration with its days, e.g. "84 days 1h0m0s".
func days(d time.Duration) string {
	const day = 24 * time.Hour
	n, rest := d/day, d%day
	switch {
	case n == 0:
		return rest.String()
	case rest == 0:
		return fmt.Sprintf("%d days", n)
	}
	return fmt.Sprintf("%d days %v", n, rest)
}

// unixText shows a lifetime bound as a date when it is one.
func unixText(s uint64) string {
	const year10000 = 253402300800
	if s >= year10000 {
		return fmt.Sprintf("%d (Unix seconds)", s)
	}
	return time.Unix(int64(s), 0).UTC().Format(time.RFC3339)
}
