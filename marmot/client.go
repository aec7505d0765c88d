package marmot

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// Errors of the relay client.
var (
	// ErrRelay means the relay's connection failed or it broke the
	// protocol (a malformed frame, an oversized message).
	ErrRelay = errors.New("marmot: relay connection failed")
	// ErrRejected means the relay answered OK false (or CLOSED); the
	// Error's Reason is the relay's message.
	ErrRejected = errors.New("marmot: relay refused")
	// ErrTimeout means the relay did not answer in time.
	ErrTimeout = errors.New("marmot: relay did not answer in time")
)

// Burrow's extensions, as NIP-11 advertises them (docs/commit-slots.md).
const (
	ExtSinceSeq    = "since_seq/1"
	ExtCommitSlots = "commit_slots/1"
)

// KindCommitClaim is a commit-slot claim (docs/commit-slots.md).
const KindCommitClaim = 20445

// ClientOptions configure a relay client; the zero value works.
type ClientOptions struct {
	// Signer answers NIP-42 AUTH when the relay asks (reading gift wraps
	// needs it). Nil: the client never authenticates. Group events are
	// never read or written with AUTH: it would link the account to the
	// group.
	Signer Signer
	// Timeout bounds each request's wait for the relay (OK, EOSE); zero
	// means 10 s.
	Timeout time.Duration
	// MaxMessage bounds one incoming websocket message in bytes; zero
	// means 4 MiB.
	MaxMessage int64
	// Logger receives connection diagnostics (never event content); nil
	// discards them.
	Logger *slog.Logger
}

// RelayInfo is the part of a relay's NIP-11 document the client uses.
type RelayInfo struct {
	SupportedNIPs []int
	Extensions    []string
}

// Supports reports whether the relay advertises a Burrow extension.
func (i RelayInfo) Supports(ext string) bool { return slices.Contains(i.Extensions, ext) }

// OK is a relay's answer to an EVENT.
type OK struct {
	Accepted bool
	Message  string
	// Seq is the group sequence number of a stored kind 445 on relays
	// with since_seq ("seq:<n>"), 0 otherwise.
	Seq uint64
	// Released is the holder id a successful release claim released
	// ("seq:<n> released:<holder id>"), empty otherwise.
	Released string
}

// Delivered is one event a subscription delivered.
type Delivered struct {
	Event *nostr.Event
	// Seq is set on ordered (since_seq) reads; Released marks a Commit
	// whose commit slot was released.
	Seq      uint64
	Released bool
}

// Client is a connection to one relay. Its methods are safe for
// concurrent use.
type Client struct {
	url  string
	opts ClientOptions
	ws   *websocket.Conn
	info RelayInfo
	log  *slog.Logger

	wmu    sync.Mutex
	mu     sync.Mutex
	oks    map[string]chan OK
	subs   map[string]*Subscription
	authCh chan struct{}
	chall  string
	authed bool
	next   atomic.Uint64
	done   chan struct{}
	// closing ends deliveries a subscriber no longer reads, so Close
	// never waits on a full subscription.
	closing   chan struct{}
	closeOnce sync.Once
	err       error
	// malformed counts frames that were not NIP-01 messages.
	malformed atomic.Uint64
}

// Dial connects to a relay and reads its NIP-11 document.
func Dial(ctx context.Context, rawURL string, opts ClientOptions) (*Client, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MaxMessage == 0 {
		opts.MaxMessage = 4 << 20
	}
	c := &Client{url: rawURL, opts: opts, log: opts.Logger, oks: map[string]chan OK{}, subs: map[string]*Subscription{},
		authCh: make(chan struct{}, 1), done: make(chan struct{}), closing: make(chan struct{})}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	info, err := fetchInfo(ctx, rawURL)
	if err != nil {
		// A relay without NIP-11 is still a relay: no extensions.
		c.log.Debug("NIP-11 unavailable", "relay", rawURL, "err", err)
	}
	c.info = info
	d := websocket.Dialer{HandshakeTimeout: opts.Timeout}
	ws, resp, err := d.DialContext(ctx, rawURL, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", ErrRelay, rawURL, err)
	}
	ws.SetReadLimit(opts.MaxMessage)
	c.ws = ws
	go c.readLoop()
	return c, nil
}

// fetchInfo reads the NIP-11 document over HTTP.
func fetchInfo(ctx context.Context, wsURL string) (RelayInfo, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return RelayInfo{}, err
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return RelayInfo{}, err
	}
	req.Header.Set("Accept", "application/nostr+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return RelayInfo{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return RelayInfo{}, fmt.Errorf("NIP-11: HTTP %d", resp.StatusCode)
	}
	var doc struct {
		SupportedNIPs       []int    `json:"supported_nips"`
		SupportedExtensions []string `json:"supported_extensions"`
		BurrowExtensions    []string `json:"burrow_extensions"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return RelayInfo{}, err
	}
	info := RelayInfo{SupportedNIPs: doc.SupportedNIPs, Extensions: doc.SupportedExtensions}
	for _, e := range doc.BurrowExtensions {
		if !slices.Contains(info.Extensions, e) {
			info.Extensions = append(info.Extensions, e)
		}
	}
	return info, nil
}

// Info is the relay's NIP-11 document as read at Dial.
func (c *Client) Info() RelayInfo { return c.info }

// URL is the relay's address.
func (c *Client) URL() string { return c.url }

// Malformed is how many frames the relay sent that were not NIP-01
// messages (not a JSON array, an unknown shape, a short OK or EVENT); they
// are dropped, so a caller waiting for an answer times out, and this count
// says why.
func (c *Client) Malformed() uint64 { return c.malformed.Load() }

// Err is why the connection ended, nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { close(c.closing) })
	err := c.ws.Close()
	<-c.done
	return err
}

func (c *Client) write(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	deadline := time.Now().Add(c.opts.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.ws.SetWriteDeadline(deadline)
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("%w: write: %w", ErrRelay, err)
	}
	return nil
}

func (c *Client) readLoop() {
	defer close(c.done)
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			c.fail(err)
			return
		}
		if err := c.dispatch(msg); err != nil {
			c.malformed.Add(1)
			c.log.Debug("relay sent a malformed frame", "relay", c.url, "err", err)
		}
	}
}

// fail ends every waiter when the connection breaks.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = fmt.Errorf("%w: %w", ErrRelay, err)
	for id, ch := range c.oks {
		close(ch)
		delete(c.oks, id)
	}
	for id, s := range c.subs {
		s.finish(c.err)
		delete(c.subs, id)
	}
}

func (c *Client) dispatch(msg []byte) error {
	var frame []json.RawMessage
	if err := json.Unmarshal(msg, &frame); err != nil || len(frame) == 0 {
		return fmt.Errorf("not a JSON array")
	}
	var label string
	if err := json.Unmarshal(frame[0], &label); err != nil {
		return err
	}
	str := func(i int) string {
		var s string
		if i < len(frame) {
			_ = json.Unmarshal(frame[i], &s)
		}
		return s
	}
	switch label {
	case "OK":
		if len(frame) < 3 {
			return fmt.Errorf("short OK")
		}
		var ok OK
		if err := json.Unmarshal(frame[2], &ok.Accepted); err != nil {
			return err
		}
		ok.Message = str(3)
		if rest, found := strings.CutPrefix(ok.Message, "seq:"); found && ok.Accepted {
			n, more, _ := strings.Cut(rest, " ")
			ok.Seq, _ = strconv.ParseUint(n, 10, 64)
			ok.Released, _ = strings.CutPrefix(more, "released:")
		}
		c.mu.Lock()
		ch := c.oks[str(1)]
		delete(c.oks, str(1))
		c.mu.Unlock()
		if ch != nil {
			ch <- ok
		}
	case "EVENT":
		if len(frame) < 3 {
			return fmt.Errorf("short EVENT")
		}
		ev := new(nostr.Event)
		if err := json.Unmarshal(frame[2], ev); err != nil {
			return err
		}
		d := Delivered{Event: ev}
		if len(frame) > 3 {
			var meta struct {
				Seq      uint64 `json:"seq"`
				Released bool   `json:"released"`
			}
			if err := json.Unmarshal(frame[3], &meta); err == nil {
				d.Seq, d.Released = meta.Seq, meta.Released
			}
		}
		c.mu.Lock()
		s := c.subs[str(1)]
		c.mu.Unlock()
		if s != nil {
			s.deliver(d)
		}
	case "EOSE":
		c.mu.Lock()
		s := c.subs[str(1)]
		c.mu.Unlock()
		if s != nil {
			// NIP-67: ["more"] says a limit cut the stored events; a
			// CLOSED follows on since_seq reads only.
			var hint []string
			if len(frame) > 2 {
				_ = json.Unmarshal(frame[2], &hint)
			}
			s.eose(slices.Contains(hint, "more"))
		}
	case "CLOSED":
		c.mu.Lock()
		s := c.subs[str(1)]
		delete(c.subs, str(1))
		c.mu.Unlock()
		if s != nil {
			s.finish(&Error{Check: ErrRejected, Reason: str(2)})
		}
	case "AUTH":
		c.mu.Lock()
		c.chall = str(1)
		c.mu.Unlock()
		select {
		case c.authCh <- struct{}{}:
		default:
		}
	case "NOTICE":
		c.log.Debug("relay notice", "relay", c.url, "notice", quote(str(1)))
	}
	return nil
}

// Publish sends an event and waits for the relay's OK. A publish counts
// only when OK is true; "duplicate:" with OK true is a success. When the
// relay answers auth-required and the client has a Signer and a challenge,
// it authenticates and sends the event once more.
func (c *Client) Publish(ctx context.Context, ev *nostr.Event) (OK, error) {
	ok, err := c.publishOnce(ctx, ev)
	if err == nil && !ok.Accepted && strings.HasPrefix(ok.Message, "auth-required:") && c.opts.Signer != nil {
		if aerr := c.Authenticate(ctx); aerr == nil {
			ok, err = c.publishOnce(ctx, ev)
		}
	}
	if err != nil {
		return ok, err
	}
	if !ok.Accepted {
		return ok, &Error{Check: ErrRejected, Reason: ok.Message}
	}
	return ok, nil
}

func (c *Client) publishOnce(ctx context.Context, ev *nostr.Event) (OK, error) {
	ch := make(chan OK, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return OK{}, c.err
	}
	c.oks[ev.ID] = ch
	c.mu.Unlock()
	if err := c.write(ctx, []any{"EVENT", ev}); err != nil {
		c.mu.Lock()
		delete(c.oks, ev.ID)
		c.mu.Unlock()
		return OK{}, err
	}
	return c.waitOK(ctx, ev.ID, ch)
}

func (c *Client) waitOK(ctx context.Context, id string, ch chan OK) (OK, error) {
	t := time.NewTimer(c.opts.Timeout)
	defer t.Stop()
	select {
	case ok, open := <-ch:
		if !open {
			c.mu.Lock()
			defer c.mu.Unlock()
			return OK{}, c.err
		}
		return ok, nil
	case <-t.C:
	case <-ctx.Done():
	}
	c.mu.Lock()
	delete(c.oks, id)
	c.mu.Unlock()
	if ctx.Err() != nil {
		return OK{}, ctx.Err()
	}
	return OK{}, fail(ErrTimeout, nil, "no OK for event %s within %v", id, c.opts.Timeout)
}

// Authenticate answers the relay's NIP-42 challenge with the Signer (it
// waits for a challenge if none arrived yet).
func (c *Client) Authenticate(ctx context.Context) error {
	if c.opts.Signer == nil {
		return fail(ErrRejected, nil, "the relay wants AUTH and the client has no signer")
	}
	c.mu.Lock()
	chall := c.chall
	c.mu.Unlock()
	if chall == "" {
		t := time.NewTimer(c.opts.Timeout)
		defer t.Stop()
		select {
		case <-c.authCh:
		case <-t.C:
			return fail(ErrTimeout, nil, "no AUTH challenge within %v", c.opts.Timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
		c.mu.Lock()
		chall = c.chall
		c.mu.Unlock()
	}
	ev := &nostr.Event{Kind: nostr.KindClientAuthentication, CreatedAt: nostr.Now(),
		Tags: nostr.Tags{{"relay", c.url}, {"challenge", chall}}}
	if err := c.opts.Signer.SignEvent(ev); err != nil {
		return err
	}
	ch := make(chan OK, 1)
	c.mu.Lock()
	c.oks[ev.ID] = ch
	c.mu.Unlock()
	if err := c.write(ctx, []any{"AUTH", ev}); err != nil {
		return err
	}
	ok, err := c.waitOK(ctx, ev.ID, ch)
	if err != nil {
		return err
	}
	if !ok.Accepted {
		return &Error{Check: ErrRejected, Reason: ok.Message}
	}
	c.mu.Lock()
	c.authed = true
	c.mu.Unlock()
	return nil
}

// Subscription is one REQ. Events arrive on Events in the relay's order;
// EOSE is closed when the stored events are done; Done is closed when the
// subscription ends, with Err saying why (nil after Close).
type Subscription struct {
	ID     string
	Events chan Delivered
	EOSE   chan struct{}
	Done   chan struct{}
	c      *Client

	mu       sync.Mutex
	err      error
	more     bool
	eoseOnce sync.Once
	doneOnce sync.Once
	// dropping is set once deliver dropped an event (see deliver).
	dropping atomic.Bool
}

// deliver hands an event to the subscriber; the connection's reader
// waits while the subscriber's buffer is full (backpressure on the relay),
// until the subscription or the client is closed. Once one event is
// dropped that way, every later one is too: a reader tracking a cursor
// must never see an event after a gap it was not told of.
func (s *Subscription) deliver(d Delivered) {
	if s.dropping.Load() {
		return
	}
	select {
	case s.Events <- d:
		return
	default:
	}
	select {
	case s.Events <- d:
	case <-s.Done:
		s.dropping.Store(true)
	case <-s.c.closing:
		s.dropping.Store(true)
	}
}

func (s *Subscription) eose(more bool) {
	s.eoseOnce.Do(func() {
		s.mu.Lock()
		s.more = more
		s.mu.Unlock()
		close(s.EOSE)
	})
}

func (s *Subscription) finish(err error) {
	s.doneOnce.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.Done)
	})
}

// Err is why the subscription ended.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription (CLOSE).
func (s *Subscription) Close() {
	s.c.mu.Lock()
	delete(s.c.subs, s.ID)
	s.c.mu.Unlock()
	_ = s.c.write(context.Background(), []any{"CLOSE", s.ID})
	s.finish(nil)
}

// Subscribe sends a REQ with the given filters. Each filter is a
// nostr.Filter, or a map for filters with fields go-nostr does not know
// (since_seq).
func (c *Client) Subscribe(ctx context.Context, filters ...any) (*Subscription, error) {
	s := &Subscription{ID: "m" + strconv.FormatUint(c.next.Add(1), 36), Events: make(chan Delivered, 256),
		EOSE: make(chan struct{}), Done: make(chan struct{}), c: c}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.subs[s.ID] = s
	c.mu.Unlock()
	if err := c.write(ctx, append([]any{"REQ", s.ID}, filters...)); err != nil {
		return nil, err
	}
	return s, nil
}

// Fetch reads the stored events matching the filters (until EOSE). A
// CLOSED with auth-required: makes the client authenticate (with its
// Signer) and ask once more.
func (c *Client) Fetch(ctx context.Context, filters ...any) ([]Delivered, error) {
	out, err := c.fetchOnce(ctx, filters)
	var e *Error
	if errors.As(err, &e) && strings.HasPrefix(e.Reason, "auth-required:") && c.opts.Signer != nil {
		if aerr := c.Authenticate(ctx); aerr != nil {
			return nil, aerr
		}
		out, err = c.fetchOnce(ctx, filters)
	}
	return out, err
}

func (c *Client) fetchOnce(ctx context.Context, filters []any) ([]Delivered, error) {
	s, err := c.Subscribe(ctx, filters...)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	// Only a since_seq read follows a cut page (EOSE ["more"]) with its
	// CLOSED "more: after seq"; a plain REQ that a limit cut goes live.
	sinceSeq := false
	if len(filters) == 1 {
		if m, ok := filters[0].(map[string]any); ok {
			_, sinceSeq = m["since_seq"]
		}
	}
	var out []Delivered
	t := time.NewTimer(c.opts.Timeout)
	defer t.Stop()
	eose := s.EOSE
	for {
		select {
		case d := <-s.Events:
			out = append(out, d)
		case <-eose:
			s.mu.Lock()
			more := s.more
			s.mu.Unlock()
			if more && sinceSeq {
				// The relay cut the page; wait for its CLOSED.
				eose = nil
				continue
			}
			// Drain what arrived before EOSE.
			for {
				select {
				case d := <-s.Events:
					out = append(out, d)
				default:
					return out, nil
				}
			}
		case <-s.Done:
			for {
				select {
				case d := <-s.Events:
					out = append(out, d)
				default:
					if err := s.Err(); err != nil {
						return out, err
					}
					return out, nil
				}
			}
		case <-t.C:
			return out, fail(ErrTimeout, nil, "no EOSE within %v", c.opts.Timeout)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// plainReadOverlap is how far before the cursor a plain REQ re-reads.
const plainReadOverlap = 600

// GroupEvents reads a group's kind 445 events after cursor: in sequence
// order with since_seq where the relay advertises it (cursor is then a
// seq, and the pages are followed to the end), otherwise with a plain REQ
// (cursor is a created_at lower bound, a fetch hint only). The second
// result is the cursor to continue from.
func (c *Client) GroupEvents(ctx context.Context, h [32]byte, cursor uint64) ([]Delivered, uint64, error) {
	group := hex.EncodeToString(h[:])
	if !c.info.Supports(ExtSinceSeq) {
		f := nostr.Filter{Kinds: []int{KindGroupEvent}, Tags: nostr.TagMap{"h": {group}}}
		// The timestamp is a hint: re-read an overlap, since relays differ
		// on whether since is inclusive and events may be published late;
		// the message id removes what was already processed.
		if cursor > plainReadOverlap {
			since := nostr.Timestamp(cursor - plainReadOverlap)
			f.Since = &since
		}
		evs, err := c.Fetch(ctx, f)
		// Plain REQs answer newest first; Marmot order comes from the MLS
		// bytes, never from the relay, but oldest first needs fewer retries.
		slices.SortStableFunc(evs, func(a, b Delivered) int { return int(a.Event.CreatedAt - b.Event.CreatedAt) })
		next := cursor
		for _, d := range evs {
			next = max(next, uint64(d.Event.CreatedAt))
		}
		return evs, next, err
	}
	var all []Delivered
	for {
		evs, err := c.Fetch(ctx, map[string]any{"#h": []string{group}, "kinds": []int{KindGroupEvent}, "since_seq": cursor})
		for _, d := range evs {
			cursor = max(cursor, d.Seq)
		}
		all = append(all, evs...)
		var e *Error
		if errors.As(err, &e) && strings.HasPrefix(e.Reason, "more: after seq ") {
			if m, perr := strconv.ParseUint(strings.TrimPrefix(e.Reason, "more: after seq "), 10, 64); perr == nil {
				cursor = m
				continue
			}
		}
		return all, cursor, err
	}
}

// PublishCommit publishes a commit's event: as a commit-slot claim when the
// relay advertises commit slots (slotKey is CommitSlotKey of the epoch the
// commit is built on), as a plain kind 445 otherwise. Only OK true counts.
func (c *Client) PublishCommit(ctx context.Context, commit *nostr.Event, slotKey []byte) (OK, error) {
	if !c.info.Supports(ExtCommitSlots) || slotKey == nil {
		return c.Publish(ctx, commit)
	}
	return c.publishClaim(ctx, commit, slotKey, nil)
}

// publishClaim wraps commit in a kind 20445 claim signed by slotKey, with
// the extra tags given (a release tag), and publishes it.
func (c *Client) publishClaim(ctx context.Context, commit *nostr.Event, slotKey []byte, extra nostr.Tags) (OK, error) {
	h, _, err := CheckGroupEvent(commit)
	if err != nil {
		return OK{}, err
	}
	tags := append(nostr.Tags{{"h", hex.EncodeToString(h[:])}}, extra...)
	claim := &nostr.Event{Kind: KindCommitClaim, CreatedAt: nostr.Now(), Tags: tags, Content: commit.String()}
	if err := claim.Sign(hex.EncodeToString(slotKey)); err != nil {
		return OK{}, err
	}
	return c.Publish(ctx, claim)
}

// CommitSlotKey derives the commit-slot signing key of g's current epoch
// (docs/commit-slots.md section 2): x = MLS-Exporter("nostr-commit-slot",
// "v1", 32), sk = x mod n; an sk of zero has no key.
func (g *Group) CommitSlotKey() ([]byte, error) {
	x, err := g.mls.Export("nostr-commit-slot", []byte("v1"), 32)
	if err != nil {
		return nil, err
	}
	return slotKey(x)
}

func slotKey(x []byte) ([]byte, error) {
	var s btcec.ModNScalar
	s.SetByteSlice(x) // reduces mod n
	if s.IsZero() {
		return nil, fmt.Errorf("marmot: the epoch's commit slot key is zero")
	}
	b := s.Bytes()
	return b[:], nil
}

// RelayList is an account's NIP-65 list (kind 10002).
type RelayList struct {
	Read, Write []string
}

// RelayList reads an account's kind 10002: entries marked write or
// unmarked are where it publishes KeyPackages.
func (c *Client) RelayList(ctx context.Context, account Pubkey) (RelayList, error) {
	ev, err := c.newest(ctx, 10002, account)
	if err != nil || ev == nil {
		return RelayList{}, err
	}
	var rl RelayList
	for _, t := range ev.Tags {
		if len(t) < 2 || t[0] != "r" || CheckRelayURL(t[1]) != nil {
			continue
		}
		marker := ""
		if len(t) > 2 {
			marker = t[2]
		}
		if marker == "" || marker == "read" {
			rl.Read = append(rl.Read, t[1])
		}
		if marker == "" || marker == "write" {
			rl.Write = append(rl.Write, t[1])
		}
	}
	return rl, nil
}

// InboxRelays reads an account's kind 10050 (NIP-17 inbox relays), where
// its Welcomes go.
func (c *Client) InboxRelays(ctx context.Context, account Pubkey) ([]string, error) {
	ev, err := c.newest(ctx, 10050, account)
	if err != nil || ev == nil {
		return nil, err
	}
	var out []string
	for _, t := range ev.Tags {
		if len(t) >= 2 && t[0] == "relay" && CheckRelayURL(t[1]) == nil {
			out = append(out, t[1])
		}
	}
	return out, nil
}

func (c *Client) newest(ctx context.Context, kind int, account Pubkey) (*nostr.Event, error) {
	evs, err := c.Fetch(ctx, nostr.Filter{Kinds: []int{kind}, Authors: []string{account.Hex()}})
	if err != nil {
		return nil, err
	}
	var best *nostr.Event
	for _, d := range evs {
		ev := d.Event
		if ev.Kind != kind || ev.PubKey != account.Hex() || VerifyEvent(ev) != nil {
			continue
		}
		if best == nil || ev.CreatedAt > best.CreatedAt || (ev.CreatedAt == best.CreatedAt && ev.ID < best.ID) {
			best = ev
		}
	}
	return best, nil
}

// KeyPackages fetches an account's kind 30443 events and returns the
// usable ones (ValidateKeyPackageEvent at now), one per d slot (newest,
// then lower id), ranked as the spec prefers: non-last-resort first, then
// the freshest, then the lower KeyPackageRef.
func (c *Client) KeyPackages(ctx context.Context, account Pubkey, now time.Time) ([]*nostr.Event, error) {
	evs, err := c.Fetch(ctx, nostr.Filter{Kinds: []int{KindKeyPackage}, Authors: []string{account.Hex()}})
	if err != nil {
		return nil, err
	}
	type cand struct {
		ev *nostr.Event
		kp *KeyPackageEvent
	}
	slots := map[string]cand{}
	for _, d := range evs {
		ev := d.Event
		if ev.PubKey != account.Hex() || VerifyEvent(ev) != nil {
			continue
		}
		kp, err := ValidateKeyPackageEvent(ev, now)
		if err != nil {
			continue
		}
		if cur, ok := slots[kp.Slot]; ok && (cur.ev.CreatedAt > ev.CreatedAt || (cur.ev.CreatedAt == ev.CreatedAt && cur.ev.ID < ev.ID)) {
			continue
		}
		slots[kp.Slot] = cand{ev, kp}
	}
	list := make([]cand, 0, len(slots))
	for _, c := range slots {
		list = append(list, c)
	}
	slices.SortFunc(list, func(a, b cand) int {
		switch {
		case a.kp.LastResort != b.kp.LastResort:
			if !a.kp.LastResort {
				return -1
			}
			return 1
		case a.ev.CreatedAt != b.ev.CreatedAt:
			return int(b.ev.CreatedAt - a.ev.CreatedAt)
		}
		return strings.Compare(a.kp.Ref, b.kp.Ref)
	})
	out := make([]*nostr.Event, len(list))
	for i, c := range list {
		out[i] = c.ev
	}
	return out, nil
}

// GiftWraps reads the gift wraps addressed to account (the relay may ask
// for AUTH first, which needs the client's Signer to be that account).
func (c *Client) GiftWraps(ctx context.Context, account Pubkey) ([]*nostr.Event, error) {
	evs, err := c.Fetch(ctx, nostr.Filter{Kinds: []int{KindGiftWrap}, Tags: nostr.TagMap{"p": {account.Hex()}}})
	out := make([]*nostr.Event, 0, len(evs))
	for _, d := range evs {
		out = append(out, d.Event)
	}
	return out, err
}

// DeleteKeyPackage publishes a NIP-09 kind 5 naming a used KeyPackage
// event (e and k tags), signed by its author.
func (c *Client) DeleteKeyPackage(ctx context.Context, account Signer, kp *nostr.Event) (OK, error) {
	del := &nostr.Event{Kind: nostr.KindDeletion, CreatedAt: nostr.Now(),
		Tags: nostr.Tags{{"e", kp.ID}, {"k", strconv.Itoa(kp.Kind)}}}
	if err := account.SignEvent(del); err != nil {
		return OK{}, err
	}
	return c.Publish(ctx, del)
}

// ReplaceKeyPackage is the KeyPackage lifecycle after a join: it publishes
// a fresh KeyPackage in the used one's d slot first (with a created_at
// after the used one's, so the slot's newest-wins rule cannot pick the old
// one), and only once a relay accepted it, asks every relay to delete the
// used event (NIP-09). It returns the new bundle and event. The caller then
// deletes the used KeyPackage's private keys: at once for a non-last-resort
// KeyPackage, and for a last-resort one now that the replacement is
// confirmed.
func ReplaceKeyPackage(ctx context.Context, clients []*Client, account Signer, used *nostr.Event, opts KeyPackageOptions) (*KeyPackageBundle, *nostr.Event, error) {
	slot := ""
	if used.Kind == KindKeyPackage {
		slot = used.Tags.GetD()
	}
	if len(slot) != 64 || !isLowerHex(slot) {
		slot = NewSlot()
	}
	b, err := NewKeyPackage(account, opts)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	created := max(now.Unix(), int64(used.CreatedAt)+1)
	ev, err := b.Event(account, slot, time.Unix(created, 0))
	if err != nil {
		return nil, nil, err
	}
	accepted := 0
	var lastErr error
	for _, c := range clients {
		if _, err := c.Publish(ctx, ev); err != nil {
			lastErr = err
			continue
		}
		accepted++
	}
	if accepted == 0 {
		return nil, nil, fmt.Errorf("marmot: no relay accepted the replacement KeyPackage; the used one is kept: %w", lastErr)
	}
	deleted := 0
	for _, c := range clients {
		if _, err := c.DeleteKeyPackage(ctx, account, used); err != nil {
			lastErr = err
			continue
		}
		deleted++
	}
	if deleted == 0 {
		return b, ev, fmt.Errorf("marmot: the replacement is published but no relay accepted the deletion of the used KeyPackage: %w", lastErr)
	}
	return b, ev, nil
}
