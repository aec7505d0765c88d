package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// SlotConfig describes one commit-slot contention run (docs/commit-slots.md): in each round every
// contender sends, at the same moment on its own connection, a claim for one fresh slot wrapping a
// Commit of its own. Zero fields take the defaults noted.
type SlotConfig struct {
	// URL is the relay's websocket address. Required.
	URL string
	// Rounds is how many slots are raced for (default 2,000).
	Rounds int
	// Contenders is how many connections race for each slot (default 8).
	Contenders int
	// Groups is how many h values the rounds cycle through (default 1: one busy group committing).
	Groups int
	// ContentBytes is the content length of each inner kind 445 (default 600).
	ContentBytes int
	// Bare sends each contender's inner kind 445 on its own, without a claim: the same load on a
	// relay that does not arbitrate. Every event should then be accepted.
	Bare bool
	// OKTimeout bounds the wait for each OK (default 10 s); missing it aborts the run.
	OKTimeout time.Duration
	// KeepViolations is how many violations SlotResult keeps verbatim (default 5).
	KeepViolations int
}

// Defaults for SlotConfig's zero fields.
const (
	DefaultSlotRounds = 2000
	DefaultSlotGroups = 1
)

func (c SlotConfig) withDefaults() (SlotConfig, error) {
	base, err := Config{URL: c.URL, Conns: c.Contenders, Groups: c.Groups, ContentBytes: c.ContentBytes,
		OKTimeout: c.OKTimeout, KeepFailures: c.KeepViolations, Events: c.Rounds}.withDefaults()
	if err != nil {
		return c, err
	}
	c.Contenders, c.ContentBytes, c.OKTimeout, c.KeepViolations = base.Conns, base.ContentBytes, base.OKTimeout, base.KeepFailures
	if c.Rounds == 0 {
		c.Rounds = DefaultSlotRounds
	}
	if c.Groups == 0 {
		c.Groups = DefaultSlotGroups
	}
	return c, nil
}

// SlotResult is what one contention run measured. Latency is from writing a claim (or bare event)
// to reading its OK, over every message sent.
type SlotResult struct {
	Bare       bool
	Rounds     int
	Contenders int
	Sent       int // claims (or bare events) answered
	Winners    int // OK true
	Blocked    int // OK false "blocked: slot taken by ..." naming the round's winner
	// Violations counts rounds and answers that break the slot rules: a round without exactly one
	// winner, a winner whose message is not seq:<n> or whose seq does not grow, a loser whose
	// answer is anything but blocked naming the winner. In a bare run, any OK false. Any violation
	// fails the benchmark.
	Violations       int
	ViolationSamples []string
	Duration         time.Duration
	SentPerSec       float64
	RoundsPerSec     float64
	P50, P99, Max    time.Duration
}

// slotEntry is one contender's message for one round.
type slotEntry struct {
	id      string // id the OK answers (the claim's, or the bare event's)
	innerID string // the inner kind 445's id (== id when bare)
	group   int
	frame   []byte
}

// answer is what one contender got in one round.
type answer struct {
	ok      bool
	reason  string
	latency time.Duration
}

// RunSlots races cfg.Contenders connections for cfg.Rounds fresh slots and checks every round's
// outcome. It returns an error if the run could not complete; rule violations are counted in the
// result, not returned as errors, so the caller can print them.
func RunSlots(ctx context.Context, cfg SlotConfig) (SlotResult, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return SlotResult{}, err
	}
	rounds, err := prepareSlots(ctx, cfg)
	if err != nil {
		return SlotResult{}, fmt.Errorf("bench: prepare claims: %w", err)
	}
	conns, err := dialAll(ctx, cfg.URL, cfg.Contenders, cfg.OKTimeout)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	if err != nil {
		return SlotResult{}, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-runCtx.Done()
		for _, c := range conns {
			_ = c.Close()
		}
	}()

	// Each contender waits on its own channel for the round number, so all of them write within
	// microseconds of each other; the coordinator judges a round once every answer is in.
	starts := make([]chan int, len(conns))
	answers := make([]answer, len(conns))
	errs := make([]error, len(conns))
	var done sync.WaitGroup
	for i, c := range conns {
		starts[i] = make(chan int, 1)
		go func() {
			for r := range starts[i] {
				if errs[i] == nil {
					answers[i], errs[i] = contend(c, rounds[r][i], cfg.OKTimeout)
					if errs[i] != nil {
						cancel()
					}
				}
				done.Done()
			}
		}()
	}
	defer func() {
		for _, s := range starts {
			close(s)
		}
	}()

	res := SlotResult{Bare: cfg.Bare, Contenders: len(conns)}
	judge := newJudge(cfg.Bare, cfg.Groups)
	latencies := make([]time.Duration, 0, cfg.Rounds*len(conns))
	start := time.Now()
	for r := range rounds {
		done.Add(len(conns))
		for _, s := range starts {
			s <- r
		}
		done.Wait()
		for i, e := range errs {
			if e != nil {
				if ctx.Err() != nil {
					return res, fmt.Errorf("bench: run interrupted: %w", ctx.Err())
				}
				return res, fmt.Errorf("bench: slot run against %s: contender %d: %w", cfg.URL, i, e)
			}
		}
		for _, a := range answers {
			latencies = append(latencies, a.latency)
			res.Sent++
			if a.ok {
				res.Winners++
			}
		}
		blocked, violations := judge.round(rounds[r], answers)
		res.Blocked += blocked
		res.Violations += len(violations)
		for _, v := range violations {
			if len(res.ViolationSamples) < cfg.KeepViolations {
				res.ViolationSamples = append(res.ViolationSamples, fmt.Sprintf("round %d: %s", r, v))
			}
		}
		res.Rounds++
	}
	res.Duration = time.Since(start)
	if s := res.Duration.Seconds(); s > 0 {
		res.SentPerSec = float64(res.Sent) / s
		res.RoundsPerSec = float64(res.Rounds) / s
	}
	res.P50, res.P99, res.Max = percentile(latencies, 50), percentile(latencies, 99), percentile(latencies, 100)
	return res, nil
}

// contend sends one message and waits for its OK.
func contend(c *websocket.Conn, e slotEntry, timeout time.Duration) (answer, error) {
	sent := time.Now()
	_ = c.SetWriteDeadline(sent.Add(timeout))
	if err := c.WriteMessage(websocket.TextMessage, e.frame); err != nil {
		return answer{}, fmt.Errorf("write %s: %w", e.id, err)
	}
	ok, reason, err := awaitOK(c, e.id, sent.Add(timeout))
	if err != nil {
		return answer{}, err
	}
	return answer{ok: ok, reason: reason, latency: time.Since(sent)}, nil
}

// judge checks rounds against the slot rules, remembering each group's last seq.
type judge struct {
	bare    bool
	lastSeq []int64
}

func newJudge(bare bool, groups int) *judge {
	return &judge{bare: bare, lastSeq: make([]int64, groups)}
}

const blockedPrefix = "blocked: slot taken by "

// round returns how many answers were correct refusals and a description of each violation.
func (j *judge) round(entries []slotEntry, answers []answer) (blocked int, violations []string) {
	if j.bare {
		for i, a := range answers {
			if !a.ok {
				violations = append(violations, fmt.Sprintf("bare event %s refused: %s", entries[i].id, a.reason))
			}
		}
		return 0, violations
	}
	winner := -1
	for i, a := range answers {
		if !a.ok {
			continue
		}
		if winner >= 0 {
			violations = append(violations, fmt.Sprintf("two winners: %s and %s", entries[winner].innerID, entries[i].innerID))
			continue
		}
		winner = i
		seq, err := parseSeq(a.reason)
		g := entries[i].group
		switch {
		case err != nil:
			violations = append(violations, fmt.Sprintf("winner %s: %v", entries[i].innerID, err))
		case seq <= j.lastSeq[g]:
			violations = append(violations, fmt.Sprintf("winner %s: seq %d after seq %d", entries[i].innerID, seq, j.lastSeq[g]))
		default:
			j.lastSeq[g] = seq
		}
	}
	if winner < 0 {
		violations = append(violations, "no winner")
	}
	for i, a := range answers {
		if a.ok {
			continue
		}
		holder, found := strings.CutPrefix(a.reason, blockedPrefix)
		if !found || winner < 0 || holder != entries[winner].innerID {
			violations = append(violations, fmt.Sprintf("loser %s: %q", entries[i].innerID, a.reason))
			continue
		}
		blocked++
	}
	return blocked, violations
}

// parseSeq reads a winner's OK message, exactly "seq:<n>" with n ≥ 1.
func parseSeq(msg string) (int64, error) {
	digits, found := strings.CutPrefix(msg, "seq:")
	if !found {
		return 0, fmt.Errorf("OK message %q is not seq:<n>", msg)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("OK message %q is not seq:<n>", msg)
	}
	return n, nil
}

// prepareSlots signs every round before timing starts: per round one fresh slot key and, per
// contender, a fresh inner kind 445 under a one-use key wrapped in a claim signed by the slot key.
func prepareSlots(ctx context.Context, cfg SlotConfig) ([][]slotEntry, error) {
	groups := make([]string, cfg.Groups)
	for i := range groups {
		groups[i] = randomHex(32)
	}
	createdAt := nostr.Timestamp(time.Now().Unix())
	out := make([][]slotEntry, cfg.Rounds)
	err := inParallel(ctx, cfg.Rounds, func(r int) error {
		entries, err := signRound(cfg, r%len(groups), groups[r%len(groups)], createdAt)
		if err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		out[r] = entries
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func signRound(cfg SlotConfig, group int, h string, createdAt nostr.Timestamp) ([]slotEntry, error) {
	slotKey := nostr.GeneratePrivateKey()
	entries := make([]slotEntry, cfg.Contenders)
	for i := range entries {
		inner := nostr.Event{Kind: 445, CreatedAt: createdAt, Tags: nostr.Tags{{"h", h}}, Content: randomContent(cfg.ContentBytes)}
		if err := inner.Sign(nostr.GeneratePrivateKey()); err != nil {
			return nil, fmt.Errorf("sign commit: %w", err)
		}
		innerJSON, err := inner.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("encode commit: %w", err)
		}
		e := slotEntry{id: inner.ID, innerID: inner.ID, group: group}
		body := innerJSON
		if !cfg.Bare {
			wrapper := nostr.Event{Kind: 20445, CreatedAt: createdAt, Tags: nostr.Tags{{"h", h}}, Content: string(innerJSON)}
			if err := wrapper.Sign(slotKey); err != nil {
				return nil, fmt.Errorf("sign claim: %w", err)
			}
			if body, err = wrapper.MarshalJSON(); err != nil {
				return nil, fmt.Errorf("encode claim: %w", err)
			}
			e.id = wrapper.ID
		}
		frame, err := json.Marshal([]json.RawMessage{json.RawMessage(`"EVENT"`), body})
		if err != nil {
			return nil, fmt.Errorf("encode frame: %w", err)
		}
		e.frame = frame
		entries[i] = e
	}
	return entries, nil
}

// dialAll opens n connections to url; on error it returns those already open for the caller to
// close.
func dialAll(ctx context.Context, url string, n int, timeout time.Duration) ([]*websocket.Conn, error) {
	conns := make([]*websocket.Conn, 0, n)
	dialer := websocket.Dialer{HandshakeTimeout: timeout}
	for i := range n {
		c, resp, err := dialer.DialContext(ctx, url, http.Header{})
		if err != nil {
			return conns, fmt.Errorf("bench: dial connection %d to %s: %w", i, url, err)
		}
		_ = resp.Body.Close()
		conns = append(conns, c)
	}
	return conns, nil
}

// SlotRow is one line of a slot table.
type SlotRow struct {
	Name   string
	Result SlotResult
	// Baseline names the row this one is compared with; empty prints no ratios.
	Baseline string
}

// SlotTable writes slot rows as an aligned text table, with the ratio of each row's messages/s
// and p99 to its baseline's.
func SlotTable(w io.Writer, rows []SlotRow) error {
	byName := make(map[string]SlotResult, len(rows))
	nameWidth := len("target")
	for _, r := range rows {
		byName[r.Name] = r.Result
		nameWidth = max(nameWidth, len(r.Name), len(r.Baseline))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tsend\trounds\tK\tsent\tOK true\tblocked\tviolations\tseconds\tsent/s\trounds/s\tp50 ms\tp99 ms\tmax ms\tsent/s ratio\tp99 ratio\t%-*s\t\n",
		nameWidth, "target", nameWidth, "vs")
	for _, r := range rows {
		res := r.Result
		send := "claim"
		if res.Bare {
			send = "bare 445"
		}
		rateRatio, p99Ratio := "", ""
		if r.Baseline != "" {
			rateRatio, p99Ratio = "?", "?"
			if base, found := byName[r.Baseline]; found {
				rateRatio = ratio(res.SentPerSec, base.SentPerSec)
				p99Ratio = ratio(float64(res.P99), float64(base.P99))
			}
		}
		fmt.Fprintf(tw, "%-*s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%-*s\t\n",
			nameWidth, r.Name, send, res.Rounds, res.Contenders, res.Sent, res.Winners, res.Blocked, res.Violations,
			res.Duration.Seconds(), res.SentPerSec, res.RoundsPerSec, millis(res.P50), millis(res.P99), millis(res.Max),
			rateRatio, p99Ratio, nameWidth, r.Baseline)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: write table: %w", err)
	}
	return nil
}
