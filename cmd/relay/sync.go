package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/nip77client"
	"github.com/burrow-relay/burrow/server"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy/storage/vector"
)

const syncSynopsis = `Usage: relay sync --from ws://... [--filter JSON] [--dry-run] [relay flags]

Reconciles this relay's store with another relay over NIP-77 (negentropy) and
pulls the events the other relay holds and this one lacks. The store is the one
the relay flags name, exactly as relay serve would open it (--data-dir, or
--database-url; with embedded SQLite stop the relay first, with PostgreSQL run
it beside the running instances). Every pulled event goes through what a
publish here goes through: id and signature, admission rules, KeyPackage and
group-event validation, tombstones (a deleted event is never pulled back),
deletion requests, sequencing (kind 445 get their seq here, oldest first) and
fan-out to live subscribers. Only the rate limits that guard against hostile
clients are left out. It only pulls: run it on the other side to push.

Prints a progress line on stderr and a summary on stdout: have (events here the
other relay did not list), need (events it listed that are not here), pulled
(stored here), refused (with the count for each refusal). --dry-run reconciles
and reports have and need without fetching or storing. Exit status 0 when the
sync finished (refusals by rule included), 1 when it failed or some event
could not be stored (error: answers; run it again), 2 for bad flags.`

// syncDefaults of the remote when its NIP-11 document does not say.
const (
	// syncFrameLimit bounds the binary size of one negentropy message this
	// side sends (hex doubles it on the wire): 200 KiB stays under the
	// 512 KiB message limit of Burrow and of most relays.
	syncFrameLimit = 200 << 10
	// syncDefaultMaxLimit is the largest REQ a remote without
	// limitation.max_limit is asked for.
	syncDefaultMaxLimit = 500
	// syncHoldBytes bounds the fetched events held in memory until they
	// are stored oldest first; past it, events are fetched again in that
	// order.
	syncHoldBytes = 128 << 20
	// syncSubID is the subscription id of the reconciliation.
	syncSubID = "burrow-sync"
)

// syncOptions are relay sync's own flags.
type syncOptions struct {
	from     string
	filter   string
	dryRun   bool
	timeout  time.Duration
	progress time.Duration // how often the progress line is printed (no flag)
	hold     int           // syncHoldBytes, or less in tests (no flag)
}

// addFlags adds relay sync's flags to the relay's, listed first in --help.
func (o *syncOptions) addFlags(f *envFlags) {
	o.filter = "{}"
	f.section("relay sync")
	f.Var(stringValue{&o.from}, "from", "RELAY_SYNC_FROM", "ws:// or wss:// URL of the relay to reconcile with and pull from (required)")
	f.Var(stringValue{&o.filter}, "filter", "RELAY_SYNC_FILTER", "NIP-01 filter (JSON) of the events to reconcile, without limit; {} is everything the other relay serves")
	f.Bool(&o.dryRun, "dry-run", false, "reconcile and report have and need, without fetching or storing anything")
	f.envs["dry-run"] = "RELAY_SYNC_DRY_RUN"
	f.Duration(&o.timeout, "timeout", 30*time.Second, "how long to wait for each answer of the other relay")
	f.envs["timeout"] = "RELAY_SYNC_TIMEOUT"
	n := len(f.sections)
	f.sections = append(f.sections[n-1:], f.sections[:n-1]...)
}

// syncCommand runs `relay sync`.
func syncCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	o := syncOptions{progress: time.Second, hold: syncHoldBytes}
	cfg, err := parseServeConfig(args, lookup, stderr, o.addFlags)
	if errors.Is(err, errHelp) {
		var raw rawServe
		f := serveFlags(&config{}, &raw)
		(&syncOptions{}).addFlags(f)
		f.usage(stdout, syncSynopsis)
		return errHelp
	}
	if err != nil {
		return usageError{err}
	}
	filter, err := o.validate()
	if err != nil {
		return usageError{err}
	}
	return runSync(ctx, cfg, o, filter, stdout, stderr)
}

// validate checks --from, --timeout and --filter and returns the filter.
func (o *syncOptions) validate() (nostr.Filter, error) {
	var f nostr.Filter
	if o.from == "" {
		return f, errors.New("--from is required: the ws:// or wss:// URL of the relay to pull from")
	}
	if u, err := url.Parse(o.from); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return f, fmt.Errorf("--from %q: want a ws:// or wss:// URL", o.from)
	}
	if o.timeout <= 0 {
		return f, fmt.Errorf("--timeout must be positive, got %v", o.timeout)
	}
	if err := json.Unmarshal([]byte(o.filter), &f); err != nil {
		return f, fmt.Errorf("--filter %q: want a NIP-01 filter in JSON, such as {} or {\"kinds\":[445]}: %v", o.filter, err)
	}
	if f.Limit != 0 || f.LimitZero {
		return f, fmt.Errorf("--filter %q: a reconciliation covers every match, so limit has no meaning; narrow it with since and until", o.filter)
	}
	return f, nil
}

// runSync opens the store as relay serve does (openRelay, without
// listening), reconciles it with o.from, and pulls what is missing.
func runSync(ctx context.Context, cfg config, o syncOptions, filter nostr.Filter, stdout, stderr io.Writer) error {
	logger := newLogger(stderr, cfg)
	r, backend, err := openRelay(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := r.release(sctx); err != nil {
			logger.Error("closing the store", "err", err)
		}
	}()
	if cfg.DatabaseURL != "" {
		backend = "postgres " + postgres.RedactURL(cfg.DatabaseURL)
	}
	s := &syncer{opts: o, filter: filter, srv: r.srv, store: r.store, stderr: stderr,
		sum: syncSummary{from: o.from, into: backend, filter: o.filter, dryRun: o.dryRun, refused: map[string]int{}, notSent: map[string]int{}, failed: map[string]int{}}}
	start := time.Now()
	err = s.run(ctx)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("interrupted: %w", ctx.Err())
	}
	s.sum.took = time.Since(start)
	s.sum.write(stdout)
	if err == nil && s.sum.failedTotal() > 0 {
		err = fmt.Errorf("%d events could not be stored (error: answers); run relay sync again", s.sum.failedTotal())
	}
	return err
}

// syncer is one run of relay sync.
type syncer struct {
	opts   syncOptions
	filter nostr.Filter
	srv    *server.Server
	store  storage.Store
	stderr io.Writer

	remote *syncPeer
	// frame bounds the negentropy messages sent; batch the ids of one REQ.
	frame, batch int
	nips         []int // the remote's NIP-11 supported_nips (nil: unknown)
	nip11Err     error
	need         []string // ids the remote listed that are not here

	mu    sync.Mutex // guards sum and phase, read by the progress line
	phase string
	sum   syncSummary
}

// syncSummary is what relay sync prints at the end.
type syncSummary struct {
	from, into, filter string
	dryRun             bool
	reconciled         bool
	rounds             int
	have, need         int
	fetched            int
	pulled             int
	already            int            // answered duplicate: (stored meanwhile)
	refused            map[string]int // by refusal, numbers and ids left out
	notSent            map[string]int // listed but not sent, by reason
	bad                int            // received but not asked for, or altered
	failed             map[string]int // error: answers
	took               time.Duration
}

func (s *syncSummary) failedTotal() int { return sumValues(s.failed) }

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// write prints the summary: one "name: count" line each, with the
// refusals by reason under their total.
func (s *syncSummary) write(w io.Writer) {
	fmt.Fprintf(w, "relay sync from %s into %s, filter %s (%.1fs)\n", s.from, s.into, s.filter, s.took.Seconds())
	if !s.reconciled {
		fmt.Fprintln(w, "not reconciled")
		return
	}
	fmt.Fprintf(w, "have:    %d (here only: the other relay did not list them)\n", s.have)
	fmt.Fprintf(w, "need:    %d (there only)\n", s.need)
	if s.dryRun {
		fmt.Fprintln(w, "pulled:  0 (dry run: nothing fetched or stored)")
		return
	}
	fmt.Fprintf(w, "pulled:  %d (stored here)\n", s.pulled)
	refused := sumValues(s.refused)
	fmt.Fprintf(w, "refused: %d\n", refused)
	byCount := func(m map[string]int) {
		keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
			return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b))
		})
		for _, k := range keys {
			fmt.Fprintf(w, "  %6d  %s\n", m[k], k)
		}
	}
	byCount(s.refused)
	if s.already > 0 {
		fmt.Fprintf(w, "already held: %d (stored here while relay sync ran)\n", s.already)
	}
	if n := sumValues(s.notSent); n > 0 {
		fmt.Fprintf(w, "not sent: %d (listed by the other relay, which then did not send them)\n", n)
		byCount(s.notSent)
	}
	if s.bad > 0 {
		fmt.Fprintf(w, "discarded: %d (events the other relay sent that were not asked for, or whose id does not match their content)\n", s.bad)
	}
	if n := s.failedTotal(); n > 0 {
		fmt.Fprintf(w, "failed:  %d (not stored, for now: run relay sync again)\n", n)
		byCount(s.failed)
	}
}

func (s *syncer) run(ctx context.Context) error {
	s.readNIP11(ctx)
	stop := s.startProgress()
	defer stop()

	s.setPhase("connecting")
	ws, err := nip77client.Dial(ctx, s.opts.from, http.Header{"User-Agent": {"burrow-relay-sync/" + version}}, s.opts.timeout, 64<<20)
	if err != nil {
		return err
	}
	defer ws.Close()
	s.remote = &syncPeer{WS: ws}

	if err := s.reconcile(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.sum.reconciled = true
	s.mu.Unlock()
	s.setPhase("reconciled")
	s.progressLine()
	if s.opts.dryRun {
		return nil
	}
	return s.pull(ctx)
}

// readNIP11 reads the remote's limits: the negentropy frame size from
// limitation.max_message_length and the REQ size from
// limitation.max_limit, with defaults when it does not say.
func (s *syncer) readNIP11(ctx context.Context) {
	s.frame, s.batch = syncFrameLimit, syncDefaultMaxLimit
	doc, err := fetchRelayInfo(ctx, s.opts.from, s.opts.timeout)
	if err != nil {
		s.nip11Err = err
		return
	}
	s.nips = doc.SupportedNIPs
	if l := doc.Limitation; l != nil {
		if m := l.MaxMessageLength; m > 0 {
			// Hex doubles the bytes; the envelope takes a little more.
			s.frame = max(4096, min(syncFrameLimit, (m-1024)/2))
			// ["REQ","id",{"ids":[...],"limit":n}]: 67 bytes an id.
			s.batch = max(1, min(s.batch, (m-256)/67))
		}
		if l.MaxLimit > 0 {
			s.batch = min(s.batch, l.MaxLimit)
		}
	}
}

// relayInfo is the part of a NIP-11 document relay sync reads.
type relayInfo struct {
	SupportedNIPs []int `json:"supported_nips"`
	Limitation    *struct {
		MaxMessageLength int `json:"max_message_length"`
		MaxLimit         int `json:"max_limit"`
	} `json:"limitation"`
}

// fetchRelayInfo reads the NIP-11 document of the relay at wsURL.
func fetchRelayInfo(ctx context.Context, wsURL string, timeout time.Duration) (relayInfo, error) {
	var doc relayInfo
	httpURL := "http" + strings.TrimPrefix(wsURL, "ws")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, httpURL, nil)
	if err != nil {
		return doc, err
	}
	req.Header.Set("Accept", "application/nostr+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return doc, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return doc, fmt.Errorf("NIP-11: HTTP %d", resp.StatusCode)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc)
	return doc, err
}

// localKeys reads this store's keys of the filter's events into a sealed
// negentropy vector. They are all its events, gift wraps included: a
// remote that serves gift wraps only to their recipients does not list
// them, so they count as have.
func (s *syncer) localKeys(ctx context.Context) (*vector.Vector, error) {
	f := s.filter
	f.Limit, f.LimitZero = 0, false
	vec := vector.New()
	for k, err := range s.store.Keys(ctx, f) {
		if err != nil {
			return nil, fmt.Errorf("reading this store's events matching --filter %s: %w", s.opts.filter, err)
		}
		vec.Insert(nostr.Timestamp(k.CreatedAt), hex.EncodeToString(k.ID[:]))
	}
	vec.Seal()
	return vec, nil
}

// reconcile runs NIP-77 with the remote as the server and this store as
// the client, and records have and need.
func (s *syncer) reconcile(ctx context.Context) error {
	s.setPhase("reading this store")
	vec, err := s.localKeys(ctx)
	if err != nil {
		return err
	}
	s.setPhase("reconciling")
	var need []string
	sess := nip77client.Session{
		Sub: syncSubID, Filter: s.filter, FrameLimit: s.frame, Timeout: s.opts.timeout,
		Have: func(string) {
			s.mu.Lock()
			s.sum.have++
			s.mu.Unlock()
		},
		Need: func(id string) {
			need = append(need, id)
			s.mu.Lock()
			s.sum.need++
			s.mu.Unlock()
		},
		Round: func() {
			s.mu.Lock()
			s.sum.rounds++
			s.mu.Unlock()
		},
	}
	_, err = sess.Run(ctx, s.remote, vec)
	var refused *nip77client.RefusedError
	var noAnswer *nip77client.NoAnswerError
	switch {
	case errors.As(err, &noAnswer):
		return s.noNIP77(noAnswer)
	case errors.As(err, &refused) && strings.HasPrefix(refused.Reason, "blocked:"):
		return fmt.Errorf("the other relay refused the reconciliation: %s (narrow --filter with since and until, and run relay sync once for each part)", refused.Reason)
	case errors.As(err, &refused):
		return fmt.Errorf("the other relay refused the reconciliation: %s", refused.Reason)
	case err != nil:
		return fmt.Errorf("reconciliation with the other relay: %w", err)
	}
	s.need = need
	return nil
}

// noNIP77 is the error for a remote that did not answer NEG-OPEN.
func (s *syncer) noNIP77(why *nip77client.NoAnswerError) error {
	var b strings.Builder
	fmt.Fprintf(&b, "the other relay does not speak NIP-77 (negentropy): %v", why)
	if s.nip11Err == nil && !slices.Contains(s.nips, 77) {
		b.WriteString(", and its NIP-11 document does not list 77")
	}
	b.WriteString("; relay sync needs NIP-77 on the relay it pulls from")
	return errors.New(b.String())
}

// pull fetches the needed events in batches, holds them (up to
// opts.hold bytes), then stores them oldest first, fetching again those it
// could not hold.
func (s *syncer) pull(ctx context.Context) error {
	s.setPhase("fetching")
	type key struct {
		at int64
		id string
	}
	var keys []key
	held := map[string]*nostr.Event{}
	heldBytes := 0
	notSent, err := s.fetch(ctx, s.need, func(ev *nostr.Event) {
		keys = append(keys, key{int64(ev.CreatedAt), ev.ID})
		s.mu.Lock()
		s.sum.fetched++
		s.mu.Unlock()
		if n := eventBytes(ev); heldBytes+n <= s.opts.hold {
			held[ev.ID] = ev
			heldBytes += n
		}
	})
	s.mu.Lock()
	for reason, n := range notSent {
		s.sum.notSent[reason] += n
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.progressLine()
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.at, b.at), strings.Compare(a.id, b.id)) })

	s.setPhase("storing")
	for chunk := range slices.Chunk(keys, s.batch) {
		var again []string
		for _, k := range chunk {
			if held[k.id] == nil {
				again = append(again, k.id)
			}
		}
		if len(again) > 0 {
			// Those not sent again are counted below.
			if _, err := s.fetch(ctx, again, func(ev *nostr.Event) { held[ev.ID] = ev }); err != nil {
				return err
			}
		}
		for _, k := range chunk {
			ev := held[k.id]
			delete(held, k.id)
			if ev == nil {
				s.mu.Lock()
				s.sum.notSent["sent once, then not again"]++
				s.mu.Unlock()
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			s.store1(ctx, ev)
		}
	}
	s.progressLine()
	return nil
}

// store1 ingests one pulled event and counts its answer.
func (s *syncer) store1(ctx context.Context, ev *nostr.Event) {
	ok, msg := s.srv.Ingest(ctx, ev)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case ok && strings.HasPrefix(msg, "duplicate:"):
		s.sum.already++
	case ok:
		s.sum.pulled++
	case strings.HasPrefix(msg, "error:"):
		s.sum.failed[refusalKey(msg)]++
	default:
		s.sum.refused[refusalKey(msg)]++
	}
}

var (
	hexRun      = regexp.MustCompile(`[0-9a-f]{16,}`)
	numberedEnd = regexp.MustCompile(`\s*\([^()]*[0-9][^()]*\)$`)
)

// refusalKey is an OK message with what varies from event to event left
// out (ids, and a closing parenthesis with numbers), so refusals of one
// kind are counted together.
func refusalKey(msg string) string {
	msg = hexRun.ReplaceAllString(msg, "…")
	return numberedEnd.ReplaceAllString(msg, "")
}

// eventBytes approximates what a held event costs in memory.
func eventBytes(ev *nostr.Event) int {
	n := 256 + len(ev.Content)
	for _, t := range ev.Tags {
		for _, v := range t {
			n += 16 + len(v)
		}
	}
	return n
}

// fetch asks the remote for ids with REQs of at most s.batch ids and calls
// got for each event received that was asked for, once, and whose id
// matches its content (Ingest checks the signature, as for any publish).
// It returns how many ids were not received, by the remote's reason.
func (s *syncer) fetch(ctx context.Context, ids []string, got func(*nostr.Event)) (map[string]int, error) {
	notSent := map[string]int{}
	for batch := range slices.Chunk(ids, s.batch) {
		if err := ctx.Err(); err != nil {
			return notSent, err
		}
		want := make(map[string]bool, len(batch))
		for _, id := range batch {
			want[id] = true
		}
		reason, err := s.fetchBatch(ctx, batch, want, got)
		if err != nil {
			return notSent, err
		}
		if len(want) > 0 {
			if reason == "" {
				reason = "not sent"
			}
			notSent[refusalKey(reason)] += len(want)
		}
	}
	return notSent, nil
}

// fetchBatch runs one REQ for the ids of want (removing each as it
// arrives), retrying while the remote answers rate-limited:. It returns
// the remote's CLOSED reason, if it ended the REQ with one.
func (s *syncer) fetchBatch(ctx context.Context, batch []string, want map[string]bool, got func(*nostr.Event)) (string, error) {
	for attempt := 0; ; attempt++ {
		s.remote.subs++
		sub := fmt.Sprintf("burrow-sync-%d", s.remote.subs)
		ids := slices.DeleteFunc(slices.Clone(batch), func(id string) bool { return !want[id] })
		req, _ := json.Marshal([]any{"REQ", sub, nostr.Filter{IDs: ids, Limit: len(ids)}})
		if err := s.remote.Send(req); err != nil {
			return "", err
		}
		reason, err := s.readEvents(sub, want, got)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(reason, "rate-limited:") || attempt == 5 || len(want) == 0 {
			return reason, nil
		}
		select {
		case <-time.After(time.Duration(attempt+1) * time.Second):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// readEvents reads sub's events up to EOSE (then closes it) or CLOSED.
func (s *syncer) readEvents(sub string, want map[string]bool, got func(*nostr.Event)) (string, error) {
	for {
		label, frame, err := s.remote.Read(time.Now().Add(s.opts.timeout))
		if err != nil {
			if errors.Is(err, nip77client.ErrTimeout) {
				return "", fmt.Errorf("the other relay sent no EOSE for a REQ of %d ids within %v", len(want), s.opts.timeout)
			}
			return "", err
		}
		if nip77client.FrameString(frame, 1) != sub {
			continue
		}
		switch label {
		case "EVENT":
			var ev nostr.Event
			if len(frame) < 3 || ev.UnmarshalJSON(frame[2]) != nil || !want[ev.ID] || !ev.CheckID() {
				s.mu.Lock()
				s.sum.bad++
				s.mu.Unlock()
				continue
			}
			delete(want, ev.ID)
			got(&ev)
		case "EOSE":
			closeMsg, _ := json.Marshal([]any{"CLOSE", sub})
			return "", s.remote.Send(closeMsg)
		case "CLOSED":
			return nip77client.FrameString(frame, 2), nil
		}
	}
}

// setPhase names what relay sync is doing, for the progress line.
func (s *syncer) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

// startProgress prints the progress line every opts.progress until the
// returned function is called.
func (s *syncer) startProgress() func() {
	t := time.NewTicker(s.opts.progress)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-t.C:
				s.progressLine()
			case <-stop:
				return
			}
		}
	}()
	return func() {
		t.Stop()
		close(stop)
		<-done
	}
}

// progressLine prints where relay sync is, on stderr: every second while
// it works, and once at the end of each step.
func (s *syncer) progressLine() {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := &s.sum
	var line string
	switch s.phase {
	case "":
		return
	case "reconciling":
		line = fmt.Sprintf("reconciling: round %d, have %d, need %d so far", sum.rounds, sum.have, sum.need)
	case "reconciled":
		line = fmt.Sprintf("reconciled in %d rounds: have %d, need %d", sum.rounds, sum.have, sum.need)
	case "fetching":
		line = fmt.Sprintf("fetching: %d of %d fetched", sum.fetched, sum.need)
	case "storing":
		line = fmt.Sprintf("storing: %d of %d done: pulled %d, refused %d", sum.pulled+sumValues(sum.refused)+sum.already+sumValues(sum.failed),
			sum.fetched, sum.pulled, sumValues(sum.refused))
	default:
		line = s.phase
	}
	fmt.Fprintln(s.stderr, "relay sync: "+line)
}

// syncPeer is the websocket to the remote relay.
type syncPeer struct {
	*nip77client.WS
	subs int // REQs sent, for their ids
}
