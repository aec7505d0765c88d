package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy"
	negstorage "github.com/nbd-wtf/go-nostr/nip77/negentropy/storage"

	"github.com/burrow-relay/burrow/storage"
)

// NIP-77 (negentropy set reconciliation). A NEG-OPEN reads the keys
// (created_at, id) of every event its filter matches that the client may
// read, up to Limits.NegMaxIDs and not capped by the REQ clamp, and keeps
// them, sorted, for the session; NEG-MSG rounds run go-nostr's negentropy
// over them. The keys are a snapshot: events stored later are not in it.
// A session costs its connection and its address the memory its keys hold
// (negKeyBytes a key) and ends after Limits.NegIdleTimeout without a
// NEG-MSG.

// negKeyBytes is what one key costs in memory: its storage.Key (40) and
// its share of keyVector's running sums (half a byte, rounded up).
const negKeyBytes = 41

// negSessionBytes is charged per session on top of its keys: the
// negentropy state and the frames it builds.
const negSessionBytes = 64 << 10

// negFrameLimit bounds the binary size of one NEG-MSG the relay sends
// (hex doubles it on the wire): well under the default message limits of
// clients and relays (512 KiB).
const negFrameLimit = 96 << 10

// errNegTooBig is a filter matching more events than Limits.NegMaxIDs.
var errNegTooBig = errors.New("too many events")

// negSession is one open reconciliation.
type negSession struct {
	id    string
	neg   *negentropy.Negentropy
	bytes int
	timer *time.Timer
}

// negSessions are a connection's open reconciliations. The reader goroutine
// opens, runs and closes them; idle timers close them from their own
// goroutines, hence the lock.
type negSessions struct {
	mu    sync.Mutex
	m     map[string]*negSession
	bytes int
}

func encodeNegMsg(subID, msg string) []byte { return encodeSubString("NEG-MSG", subID, msg) }

func encodeNegErr(subID, reason string) []byte { return encodeSubString("NEG-ERR", subID, reason) }

// negSubID reads the subscription id of a NEG-* message of n elements
// after its label; on failure it answers (NEG-ERR when the id is usable, NOTICE
// otherwise).
func (c *conn) negSubID(label string, args []json.RawMessage, n int) (string, bool) {
	var subID string
	if len(args) == 0 || json.Unmarshal(args[0], &subID) != nil {
		c.notice(fmt.Sprintf("invalid: %s needs a subscription id string", label))
		return "", false
	}
	if subID == "" || len(subID) > c.srv.limits.MaxSubIDLength {
		c.notice(fmt.Sprintf("invalid: subscription id must be 1 to %d bytes", c.srv.limits.MaxSubIDLength))
		return "", false
	}
	if len(args) != n {
		c.negErr(subID, fmt.Sprintf("invalid: %s has %d elements, want %d", label, len(args)+1, n+1))
		return "", false
	}
	return subID, true
}

// negHexMessage reads a negentropy message: a JSON string of hex.
func negHexMessage(raw json.RawMessage) (string, bool) {
	var msg string
	if json.Unmarshal(raw, &msg) != nil || msg == "" || len(msg)%2 != 0 {
		return "", false
	}
	for i := 0; i < len(msg); i++ {
		if ch := msg[i]; !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f') {
			return "", false
		}
	}
	return msg, true
}

func (c *conn) negErr(subID, reason string) {
	c.send(c.srv.hardCtx, encodeNegErr(subID, reason))
}

func (c *conn) handleNegOpen(args []json.RawMessage) {
	s := c.srv
	subID, ok := c.negSubID("NEG-OPEN", args, 3)
	if !ok {
		return
	}
	// NIP-77: a NEG-OPEN for an open id replaces that session.
	c.closeNeg(subID)
	var f nostr.Filter
	if msg := parseFilter(args[1], &f); msg != "" {
		c.negErr(subID, msg)
		return
	}
	msg, ok := negHexMessage(args[2])
	if !ok {
		c.negErr(subID, "invalid: the initial message must be a non-empty lowercase hex string")
		return
	}
	authed := c.authedPubKey()
	if authed == "" && onlyWraps(f) {
		c.send(s.hardCtx, encodeAuthChallenge(c.challenge))
		c.negErr(subID, "auth-required: gift wraps (kind 1059) are served only to their recipient; authenticate (NIP-42) as the p-tagged pubkey")
		return
	}
	if h := s.cfg.ReqHandler; h != nil && h.HandlesReq(nostr.Filters{f}) {
		c.negErr(subID, "restricted: these events are handed out one request at a time and cannot be reconciled")
		return
	}
	c.negs.mu.Lock()
	open := len(c.negs.m)
	c.negs.mu.Unlock()
	if open >= s.limits.NegSessions {
		c.negErr(subID, fmt.Sprintf("rate-limited: too many open reconciliations on this connection (max %d); NEG-CLOSE some first", s.limits.NegSessions))
		return
	}
	if !s.queries.Take(c.group, 1) {
		c.negErr(subID, fmt.Sprintf("rate-limited: too many stored queries in flight from your address (max %d)", s.queries.Max()))
		return
	}
	// The read stops at what the memory left to the connection and the
	// address can hold, so a session never holds more than it may, even
	// briefly.
	room := c.negKeyRoom()
	start := time.Now()
	keys, err := c.negKeys(contextFor(s.hardCtx, c), f, authed, min(s.limits.NegMaxIDs, room))
	s.queries.Give(c.group, 1)
	s.metrics.observeQuery("neg-open", start, queryFailure(err))
	switch {
	case errors.Is(err, errNegTooBig) && room >= s.limits.NegMaxIDs:
		c.negErr(subID, fmt.Sprintf("blocked: the filter matches more than %d events; narrow it (since/until)", s.limits.NegMaxIDs))
		return
	case errors.Is(err, errNegTooBig):
		c.negErr(subID, fmt.Sprintf("rate-limited: the filter matches more events than the memory left to reconciliations on this connection and from your address can hold (%d events); NEG-CLOSE some or narrow the filter", room))
		return
	case err != nil:
		if msg := reqRefusal(err); msg != "" {
			c.negErr(subID, msg)
			return
		}
		s.log.Error("reading keys for a reconciliation", "err", err)
		c.negErr(subID, "error: could not read stored events")
		return
	}
	sess := &negSession{id: subID, bytes: len(keys)*negKeyBytes + negSessionBytes}
	if reason := c.takeNegBytes(sess.bytes); reason != "" {
		c.negErr(subID, reason)
		return
	}
	sess.neg = negentropy.New(newKeyVector(keys), negFrameLimit)
	sess.timer = time.AfterFunc(s.limits.NegIdleTimeout, func() { c.expireNeg(sess) })
	c.negs.mu.Lock()
	c.negs.m[subID] = sess
	c.negs.mu.Unlock()
	s.metrics.negSessions.Inc()
	c.reconcile(sess, msg)
}

func (c *conn) handleNegMsg(args []json.RawMessage) {
	subID, ok := c.negSubID("NEG-MSG", args, 2)
	if !ok {
		return
	}
	c.negs.mu.Lock()
	sess := c.negs.m[subID]
	c.negs.mu.Unlock()
	if sess == nil {
		c.negErr(subID, "closed: no open reconciliation with this id (never opened, closed, or idle too long); send NEG-OPEN")
		return
	}
	msg, ok := negHexMessage(args[1])
	if !ok {
		c.closeNeg(subID)
		c.negErr(subID, "invalid: a negentropy message must be a non-empty lowercase hex string")
		return
	}
	if !sess.timer.Stop() {
		return // expired meanwhile: the timer's NEG-ERR is on its way
	}
	sess.timer.Reset(c.srv.limits.NegIdleTimeout)
	c.reconcile(sess, msg)
}

func (c *conn) handleNegClose(args []json.RawMessage) {
	if subID, ok := c.negSubID("NEG-CLOSE", args, 1); ok {
		c.closeNeg(subID)
	}
}

// reconcile runs one round of sess on the client's msg and answers it.
// A message the negentropy decoder refuses ends the session.
func (c *conn) reconcile(sess *negSession, msg string) {
	out, err := negRound(sess.neg, msg)
	if err != nil {
		c.closeNeg(sess.id)
		c.negErr(sess.id, "invalid: malformed negentropy message: "+truncate(err.Error(), 200))
		return
	}
	c.send(c.srv.hardCtx, encodeNegMsg(sess.id, out))
}

// negRound is one Reconcile, with a panic in the decoder (hostile input it
// does not expect) turned into an error.
func negRound(neg *negentropy.Negentropy, msg string) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("undecodable: %v", r)
		}
	}()
	return neg.Reconcile(msg)
}

// negKeyRoom is how many keys a new session may hold within what the
// connection's and the address's open sessions leave of their budgets.
func (c *conn) negKeyRoom() int {
	l := c.srv.limits
	c.negs.mu.Lock()
	room := l.NegBytes - c.negs.bytes
	c.negs.mu.Unlock()
	room = min(room, l.NegBytesPerIP-c.srv.negBytes.Used(c.group))
	return max(0, (room-negSessionBytes)/negKeyBytes)
}

// takeNegBytes counts n bytes of keys against the connection's and the
// address's budgets; it returns the refusal, or "".
func (c *conn) takeNegBytes(n int) string {
	l := c.srv.limits
	c.negs.mu.Lock()
	defer c.negs.mu.Unlock()
	if c.negs.bytes+n > l.NegBytes {
		return fmt.Sprintf("rate-limited: open reconciliations on this connection would hold %d bytes (max %d); NEG-CLOSE some or narrow the filter", c.negs.bytes+n, l.NegBytes)
	}
	if !c.srv.negBytes.Take(c.group, n) {
		return fmt.Sprintf("rate-limited: open reconciliations from your address hold too much memory (max %d bytes)", l.NegBytesPerIP)
	}
	c.negs.bytes += n
	return ""
}

// closeNeg ends the session subID, if open, and gives back its memory.
func (c *conn) closeNeg(subID string) {
	c.negs.mu.Lock()
	sess := c.negs.m[subID]
	if sess != nil {
		c.dropNegLocked(sess)
	}
	c.negs.mu.Unlock()
}

func (c *conn) dropNegLocked(sess *negSession) {
	sess.timer.Stop()
	c.srv.metrics.negSessions.Dec()
	delete(c.negs.m, sess.id)
	c.negs.bytes -= sess.bytes
	c.srv.negBytes.Give(c.group, sess.bytes)
}

// expireNeg ends sess after its idle timeout, unless it was closed or
// replaced meanwhile.
func (c *conn) expireNeg(sess *negSession) {
	c.negs.mu.Lock()
	current := c.negs.m[sess.id] == sess
	if current {
		c.dropNegLocked(sess)
	}
	c.negs.mu.Unlock()
	if current {
		c.negErr(sess.id, fmt.Sprintf("closed: reconciliation idle for %v", c.srv.limits.NegIdleTimeout))
	}
}

// closeAllNeg ends every session of a closing connection.
func (c *conn) closeAllNeg() {
	c.negs.mu.Lock()
	for _, sess := range c.negs.m {
		c.dropNegLocked(sess)
	}
	c.negs.mu.Unlock()
}

// negKeys reads the sorted keys of the events f matches that a client
// authenticated as authed may read: gift wraps only its own, counted as
// COUNT counts them (countParts: the keys of plus less those of minus).
// errNegTooBig if any part holds more than max.
func (c *conn) negKeys(ctx context.Context, f nostr.Filter, authed string, max int) ([]storage.Key, error) {
	plus, minus := countParts(f, authed)
	read := func(part nostr.Filter) ([]storage.Key, error) {
		part.Limit, part.LimitZero = max+1, false
		var keys []storage.Key
		for k, err := range c.srv.store.Keys(ctx, part) {
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		}
		if len(keys) > max {
			return nil, errNegTooBig
		}
		return keys, nil
	}
	var keys []storage.Key
	for _, part := range plus {
		k, err := read(part)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k...)
	}
	if len(plus) > 1 {
		slices.SortFunc(keys, compareKeys)
	}
	for _, part := range minus {
		drop, err := read(part)
		if err != nil {
			return nil, err
		}
		keys = subtractKeys(keys, drop)
	}
	if len(keys) > max {
		return nil, errNegTooBig
	}
	return keys, nil
}

func compareKeys(a, b storage.Key) int {
	if a.CreatedAt != b.CreatedAt {
		if a.CreatedAt < b.CreatedAt {
			return -1
		}
		return 1
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

// subtractKeys removes from keys one occurrence of each key of drop; both
// are sorted by compareKeys. It works in place.
func subtractKeys(keys, drop []storage.Key) []storage.Key {
	out := keys[:0]
	j := 0
	for _, k := range keys {
		for j < len(drop) && compareKeys(drop[j], k) < 0 {
			j++
		}
		if j < len(drop) && compareKeys(drop[j], k) == 0 {
			j++
			continue
		}
		out = append(out, k)
	}
	return out
}

// keyVector is negentropy.Storage over sorted keys held as bytes (40 a
// key, where go-nostr's vector holds a 64-character hex string each). It
// keeps the running sum of the ids at every keySumStride-th key, so a
// range's fingerprint costs at most 2*keySumStride additions whatever its
// size: without them every round would add up every id in the session,
// about 10 ms a round with a million keys, which a client could ask for
// again and again.
type keyVector struct {
	keys []storage.Key
	sums []idSum // sums[j] is the sum of the ids of keys[:j*keySumStride]
	acc  negstorage.Accumulator
}

// keySumStride is how many keys one running sum covers: 32 bytes per 64
// keys adds half a byte a key (negKeyBytes).
const keySumStride = 64

// idSum is a sum of ids as negentropy defines it: 256-bit little-endian
// numbers added modulo 2^256, in 64-bit limbs, least significant first.
type idSum [4]uint64

func (a *idSum) add(id *[32]byte) {
	var c uint64
	for i := range a {
		a[i], c = bits.Add64(a[i], binary.LittleEndian.Uint64(id[8*i:]), c)
	}
}

func (a idSum) minus(b idSum) idSum {
	var c uint64
	for i := range a {
		a[i], c = bits.Sub64(a[i], b[i], c)
	}
	return a
}

func newKeyVector(keys []storage.Key) *keyVector {
	v := &keyVector{keys: keys, sums: make([]idSum, 1, len(keys)/keySumStride+1)}
	var sum idSum
	for i := range keys {
		sum.add(&keys[i].ID)
		if (i+1)%keySumStride == 0 {
			v.sums = append(v.sums, sum)
		}
	}
	return v
}

// prefix is the sum of the ids of keys[:i].
func (v *keyVector) prefix(i int) idSum {
	j := i / keySumStride
	sum := v.sums[j]
	for k := j * keySumStride; k < i; k++ {
		sum.add(&v.keys[k].ID)
	}
	return sum
}

var _ negentropy.Storage = (*keyVector)(nil)

func (v *keyVector) Size() int { return len(v.keys) }

func (v *keyVector) item(i int) negentropy.Item {
	k := &v.keys[i]
	return negentropy.Item{Timestamp: nostr.Timestamp(k.CreatedAt), ID: hex.EncodeToString(k.ID[:])}
}

func (v *keyVector) Range(begin, end int) iter.Seq2[int, negentropy.Item] {
	return func(yield func(int, negentropy.Item) bool) {
		for i := begin; i < end; i++ {
			if !yield(i, v.item(i)) {
				return
			}
		}
	}
}

// FindLowerBound is the first index in [begin, end) whose key is not below
// bound. A bound's id may be a hex prefix shorter than 64 characters.
func (v *keyVector) FindLowerBound(begin, end int, bound negentropy.Bound) int {
	var buf [64]byte
	i, _ := slices.BinarySearchFunc(v.keys[begin:end], bound, func(k storage.Key, b negentropy.Bound) int {
		if ts := nostr.Timestamp(k.CreatedAt); ts != b.Timestamp {
			if ts < b.Timestamp {
				return -1
			}
			return 1
		}
		hex.Encode(buf[:], k.ID[:])
		return strings.Compare(string(buf[:]), b.ID)
	})
	return begin + i
}

func (v *keyVector) GetBound(i int) negentropy.Bound {
	if i < len(v.keys) {
		return negentropy.Bound{Item: v.item(i)}
	}
	return negentropy.InfiniteBound
}

func (v *keyVector) Fingerprint(begin, end int) string {
	var sum idSum
	if end-begin <= 2*keySumStride {
		for i := begin; i < end; i++ {
			sum.add(&v.keys[i].ID)
		}
	} else {
		sum = v.prefix(end).minus(v.prefix(begin))
	}
	for i, limb := range sum {
		binary.LittleEndian.PutUint64(v.acc.Buf[8*i:], limb)
	}
	return v.acc.GetFingerprint(end - begin)
}
