package postgres

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// maxIndexedValue bounds the bytes of a tag value kept in event_tags, well
// under PostgreSQL's B-tree row limit (about 2.7 kB). Longer values are
// stored as a prefix followed by the SHA-256 of the whole value, so equality
// stays exact; filter values get the same treatment (indexValue).
const maxIndexedValue = 512

func indexValue(v string) []byte {
	if len(v) <= maxIndexedValue {
		return []byte(v)
	}
	sum := sha256.Sum256([]byte(v))
	out := make([]byte, 0, maxIndexedValue)
	out = append(out, v[:maxIndexedValue-len(sum)]...)
	return append(out, sum[:]...)
}

// decodeHex32 decodes a 64-character lowercase hex string (an id or a
// pubkey). Uppercase is refused because NIP-01 compares ids as strings.
func decodeHex32(s string) ([]byte, bool) {
	if len(s) != 64 {
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return nil, false
		}
	}
	b, err := hex.DecodeString(s)
	return b, err == nil
}

// encodeTags writes tags as: uvarint count, then per tag uvarint item count
// and per item uvarint length and bytes. Unlike JSON or jsonb this keeps any
// byte sequence exactly, so the stored event still hashes to its id.
func encodeTags(tags nostr.Tags) []byte {
	n := binary.MaxVarintLen64
	for _, t := range tags {
		n += binary.MaxVarintLen64
		for _, s := range t {
			n += binary.MaxVarintLen64 + len(s)
		}
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(tags)))
	for _, t := range tags {
		b = binary.AppendUvarint(b, uint64(len(t)))
		for _, s := range t {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	}
	return b
}

var errBadTags = errors.New("corrupt tags column")

func decodeTags(b []byte) (nostr.Tags, error) {
	next := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, errBadTags
		}
		b = b[n:]
		return v, nil
	}
	count, err := next()
	if err != nil || count > uint64(len(b)) {
		return nil, errBadTags
	}
	tags := make(nostr.Tags, 0, count)
	for range count {
		items, err := next()
		if err != nil || items > uint64(len(b)) {
			return nil, errBadTags
		}
		tag := make(nostr.Tag, 0, items)
		for range items {
			l, err := next()
			if err != nil || l > uint64(len(b)) {
				return nil, errBadTags
			}
			tag = append(tag, string(b[:l]))
			b = b[l:]
		}
		tags = append(tags, tag)
	}
	if len(b) != 0 {
		return nil, errBadTags
	}
	return tags, nil
}

// lockKey maps an event id ("e"), an address ("a"), an author or gift wrap
// recipient ("p") or an author's KeyPackageRef ("r") to the second key of
// an advisory lock. Every Burrow instance on a database must compute it the
// same way; collisions only serialize unrelated writes.
func lockKey(kind byte, s string) int32 {
	h := fnv.New32a()
	h.Write([]byte{kind})
	h.Write([]byte(s))
	return int32(h.Sum32())
}

func address(kind int, pubkey, d string) string {
	return strconv.Itoa(kind) + ":" + pubkey + ":" + d
}

// saveArgs is one event taken apart for burrow_save. It is built on the
// caller's goroutine so the single writer only talks to the database.
type saveArgs struct {
	id, idHex, pubkey []byte
	createdAt         int64
	kind              int32
	tags              []byte
	content, sig      []byte
	slotD, addr       []byte // nil unless replaceable or addressable
	expiresAt         *int64
	h                 []byte // kind 445 with exactly one "h"
	tagNames          []string
	tagValues         [][]byte
	lockKeys          []int32
	lockExcl          []bool
	eIDs              [][]byte
	aKinds            []int32
	aPubkeys, aDs     [][]byte
	pubkeyHex         []byte   // as "p" tags carry it
	recipients        [][]byte // the "p" pubkeys of a kind 1059
	kp                bool     // saved with SaveKeyPackage: the fields below apply
	kpRef             []byte   // raw KeyPackageRef; nil when none was given
	slotCap           int32
	evictBefore       int64  // slots created before this may be evicted
	route             uint32 // picks the writer: the group for kind 445, else the author
}

func (a *saveArgs) values() []any {
	return []any{a.id, a.idHex, a.pubkey, a.createdAt, a.kind, a.tags, a.content, a.sig,
		a.slotD, a.addr, a.expiresAt, a.h, a.tagNames, a.tagValues, a.lockKeys, a.lockExcl,
		a.eIDs, a.aKinds, a.aPubkeys, a.aDs,
		a.pubkeyHex, a.recipients, a.kp, a.kpRef, a.slotCap, a.evictBefore}
}

// expiration returns the NIP-40 expiration of ev, if it has a valid one.
func expiration(ev *nostr.Event) (int64, bool) {
	for _, t := range ev.Tags {
		if len(t) >= 2 && t[0] == "expiration" {
			v, err := strconv.ParseInt(t[1], 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// newSaveArgs takes ev apart for burrow_save. kp is nil for a plain Save;
// now is the store's clock, for the slot cap's eviction age.
func newSaveArgs(ev *nostr.Event, kp *storage.KeyPackage, now time.Time) (*saveArgs, error) {
	id, ok := decodeHex32(ev.ID)
	if !ok {
		return nil, fmt.Errorf("event id %q is not 64 lowercase hex characters", ev.ID)
	}
	pubkey, ok := decodeHex32(ev.PubKey)
	if !ok {
		return nil, fmt.Errorf("pubkey %q is not 64 lowercase hex characters", ev.PubKey)
	}
	sig, err := hex.DecodeString(ev.Sig)
	if err != nil || len(sig) != 64 {
		return nil, fmt.Errorf("signature of %s is not 128 hex characters", ev.ID)
	}
	if ev.Kind < 0 || ev.Kind > 1<<31-1 {
		return nil, fmt.Errorf("kind %d out of range", ev.Kind)
	}
	if nostr.IsEphemeralKind(ev.Kind) {
		return nil, fmt.Errorf("ephemeral kind %d is never stored", ev.Kind)
	}
	a := &saveArgs{
		id: id, idHex: []byte(ev.ID), pubkey: pubkey,
		createdAt: int64(ev.CreatedAt), kind: int32(ev.Kind),
		tags: encodeTags(ev.Tags), content: []byte(ev.Content), sig: sig,
		pubkeyHex: []byte(ev.PubKey),
	}
	if exp, ok := expiration(ev); ok {
		a.expiresAt = &exp
	}

	type lock struct {
		key  int32
		excl bool
	}
	// The author lock is exclusive where the save reads or removes several
	// of the author's events at once: a request to vanish, and a capped
	// KeyPackage (so two instances cannot both fill the last place).
	authorExcl := ev.Kind == 62
	if kp != nil {
		if ev.Kind != 443 && ev.Kind != 30443 {
			return nil, fmt.Errorf("kind %d is not a KeyPackage kind (443 or 30443)", ev.Kind)
		}
		a.kp = true
		if kp.Ref != "" {
			ref, err := hex.DecodeString(kp.Ref)
			if err != nil || strings.ToLower(kp.Ref) != kp.Ref {
				return nil, fmt.Errorf("KeyPackageRef %q is not lowercase hex", kp.Ref)
			}
			a.kpRef = ref
		}
		if !kp.NotAfter.IsZero() {
			if na := kp.NotAfter.Unix(); a.expiresAt == nil || na < *a.expiresAt {
				a.expiresAt = &na
			}
		}
		if kp.SlotCap > 0 {
			a.slotCap = int32(min(kp.SlotCap, math.MaxInt32))
			a.evictBefore = now.Add(-kp.EvictAfter).Unix()
			authorExcl = true
		}
	}
	locks := []lock{{lockKey('e', ev.ID), false}, {lockKey('p', ev.PubKey), authorExcl}}
	if a.kpRef != nil {
		locks = append(locks, lock{lockKey('r', ev.PubKey+":"+kp.Ref), true})
	}
	switch {
	case nostr.IsReplaceableKind(ev.Kind):
		a.slotD = []byte{}
	case nostr.IsAddressableKind(ev.Kind):
		a.slotD = []byte(ev.Tags.GetD())
	}
	if a.slotD != nil {
		addr := address(ev.Kind, ev.PubKey, string(a.slotD))
		a.addr = indexValue(addr)
		locks = append(locks, lock{lockKey('a', addr), true})
	}

	seen := make(map[string]bool, len(ev.Tags))
	hCount := 0
	var h string
	for _, t := range ev.Tags {
		if len(t) < 2 {
			continue
		}
		name, value := t[0], t[1]
		if name == "h" {
			hCount++
			h = value
		}
		if name == "p" && ev.Kind == 1059 {
			if pk, ok := decodeHex32(value); ok {
				a.recipients = append(a.recipients, pk)
				locks = append(locks, lock{lockKey('p', value), false})
			}
		}
		if storage.IndexedTagName(name) && !seen[name+"\x00"+value] {
			seen[name+"\x00"+value] = true
			a.tagNames = append(a.tagNames, name)
			a.tagValues = append(a.tagValues, indexValue(value))
		}
		if ev.Kind != 5 {
			continue
		}
		switch name {
		case "e":
			if tid, ok := decodeHex32(value); ok {
				a.eIDs = append(a.eIDs, tid)
				locks = append(locks, lock{lockKey('e', value), true})
			}
		case "a":
			k, pk, d, ok := parseAddress(value)
			if !ok {
				continue
			}
			pkb, _ := decodeHex32(pk)
			a.aKinds = append(a.aKinds, int32(k))
			a.aPubkeys = append(a.aPubkeys, pkb)
			a.aDs = append(a.aDs, []byte(d))
			locks = append(locks, lock{lockKey('a', address(k, pk, d)), true})
		}
	}
	if ev.Kind == 445 && hCount == 1 {
		a.h = []byte(h)
		a.route = uint32(lockKey('h', h))
	} else {
		a.route = uint32(lockKey('p', ev.PubKey))
	}

	// Sorted, one entry per key, exclusive winning: every writer takes
	// locks in the same order, which rules out deadlocks among them.
	slices.SortFunc(locks, func(x, y lock) int {
		if x.key != y.key {
			return int(int64(x.key) - int64(y.key))
		}
		if x.excl == y.excl {
			return 0
		}
		if x.excl {
			return -1
		}
		return 1
	})
	for i, l := range locks {
		if i > 0 && locks[i-1].key == l.key {
			continue
		}
		a.lockKeys = append(a.lockKeys, l.key)
		a.lockExcl = append(a.lockExcl, l.excl)
	}
	return a, nil
}

// parseAddress splits a NIP-01 address "kind:pubkey:d" of a replaceable or
// addressable kind. The d of a replaceable kind is always empty.
func parseAddress(s string) (kind int, pubkey, d string, ok bool) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 {
		return 0, "", "", false
	}
	k, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, "", "", false
	}
	if _, ok := decodeHex32(parts[1]); !ok {
		return 0, "", "", false
	}
	switch {
	case nostr.IsReplaceableKind(k):
		return k, parts[1], "", true
	case nostr.IsAddressableKind(k):
		if len(parts) == 3 {
			d = parts[2]
		}
		return k, parts[1], d, true
	}
	return 0, "", "", false
}
