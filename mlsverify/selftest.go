package mlsverify

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/burrow-relay/burrow/marmot"
)

// SelftestConfig configures `relay selftest`.
type SelftestConfig struct {
	// Relay is the relay the group part runs against; empty means one
	// started with Start.
	Relay string
	// Start starts a relay for the group part (the caller's in-process
	// relay on a loopback port) and returns its URL and how to stop it.
	Start func(ctx context.Context) (url string, stop func(), err error)
	// VectorsDir, when set, is a directory of RFC 9420's official vector
	// files to run as well.
	VectorsDir string
	// Timeout bounds each request's wait for the relay; default 10 s.
	Timeout time.Duration
}

// SelftestReport is the self-test's outcome: one check per line.
type SelftestReport struct {
	Relay  string  `json:"relay"`
	Checks []Check `json:"checks"`
	Millis int64   `json:"duration_ms"`
	Passed bool    `json:"passed"`
}

// selftestMembers is the group size of the self-test's group part.
const selftestMembers = 5

// Selftest runs the engine's known-answer checks, the official vector
// files when VectorsDir is set, and a five-member Marmot group through a
// relay: KeyPackages, Welcomes, chat, an update, a removal, a SelfRemove
// and a commit race.
func Selftest(ctx context.Context, cfg SelftestConfig) (*SelftestReport, error) {
	start := time.Now()
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	rep := &SelftestReport{}
	rep.Checks = append(rep.Checks, knownAnswers()...)
	if cfg.VectorsDir != "" {
		rep.Checks = append(rep.Checks, RunVectors(cfg.VectorsDir)...)
	}
	url := cfg.Relay
	if url == "" {
		if cfg.Start == nil {
			return nil, fmt.Errorf("%w: no relay URL and no way to start one", ErrConfig)
		}
		u, stop, err := cfg.Start(ctx)
		if err != nil {
			rep.Checks = append(rep.Checks, Check{Name: "in-process relay started", Status: StatusFail, Detail: err.Error()})
			return rep.done(start), nil
		}
		defer stop()
		url = u
	}
	rep.Relay = url
	hcfg, err := Config{Relays: []string{url}, Members: selftestMembers, Timeout: cfg.Timeout, Conns: 2, ScenarioTimeout: 2 * time.Minute}.withDefaults()
	if err != nil {
		return nil, err
	}
	var relay Report
	info, probe := probeRelays(ctx, hcfg, &relay)
	if probe.Status == StatusFail {
		rep.Checks = append(rep.Checks, probe)
		return rep.done(start), nil
	}
	res := Result{Scenario: "group"}
	runScenario(ctx, hcfg, scenario{"group", selftestGroup}, &res, info)
	rep.Checks = append(rep.Checks, res.Checks...)
	return rep.done(start), nil
}

func (r *SelftestReport) done(start time.Time) *SelftestReport {
	r.Millis = time.Since(start).Milliseconds()
	r.Passed = true
	for _, c := range r.Checks {
		if c.Status == StatusFail {
			r.Passed = false
		}
	}
	return r
}

// WriteTable writes one line per check and the verdict.
func (r *SelftestReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tCHECK\tDETAIL")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(string(c.Status)), c.Name, c.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "PASS"
	if !r.Passed {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "%s: %d checks in %.1fs (group part against %s)\n", verdict, len(r.Checks), float64(r.Millis)/1000, r.Relay)
	_, err := io.WriteString(w, b.String())
	return err
}

// selftestGroup takes a five-member group through the relay, one check
// per step.
func selftestGroup(s *sim) error {
	r := s.res
	step := func(name, ok string, err error) error {
		if err != nil {
			r.check("group: "+name, StatusFail, "%s", describe(err, nil))
			return err
		}
		r.check("group: "+name, StatusPass, "%s", ok)
		return nil
	}
	ms, err := s.addMembers(selftestMembers)
	for _, m := range ms[1:] {
		if err != nil {
			break
		}
		_, err = s.discover(ms[0], m)
	}
	if err := step("KeyPackages", "5 accounts published kind 10002, 10050 and a KeyPackage; the admin found each", err); err != nil {
		return nil
	}
	admin := ms[0]
	err = s.create(admin)
	if err == nil {
		err = s.invite(admin, ms[1])
	}
	if err == nil {
		err = s.invite(admin, ms[2])
	}
	if err == nil {
		err = s.invite(admin, ms[3], ms[4])
	}
	if err := step("Welcomes", "4 members joined from gift-wrapped Welcomes (2 alone, 2 in one commit)", err); err != nil {
		return nil
	}
	_, err = s.chat(ms, "hello")
	if err := step("chat", "5 messages, each read by the 4 others", err); err != nil {
		return nil
	}
	if err := step("update", "a member's self-update reached everyone", s.commit(ms[2], (*marmot.Group).SelfUpdate)); err != nil {
		return nil
	}
	err = s.commit(admin, func(g *marmot.Group) (*marmot.Outgoing, error) { return g.Remove(ms[3].pub()) })
	if err == nil && !s.waitRemoved(ms[3]) {
		err = fmt.Errorf("%s never processed its removal", ms[3].name)
	}
	if err := step("removal", "the admin removed a member, who learnt of it", err); err != nil {
		return nil
	}
	err = selfRemove(s, admin, ms[4])
	if err := step("SelfRemove", "a member left by SelfRemove, committed by the admin", err); err != nil {
		return nil
	}
	detail, err := race(s, ms[1], ms[2])
	_ = step("commit race", detail, err)
	return nil
}

// selfRemove has leaver propose its SelfRemove and by commit it.
func selfRemove(s *sim, by, leaver *member) error {
	seen := by.proposalsSeen()
	leaver.mu.Lock()
	o, err := leaver.g.Leave()
	leaver.mu.Unlock()
	if err != nil {
		return err
	}
	if _, err := leaver.conn.publish(s.ctx, o.Event); err != nil {
		return err
	}
	s.record(o.Event)
	if err := s.await("see the SelfRemove", func(m *member) bool { return m != by || m.proposalsSeen() > seen }); err != nil {
		return err
	}
	if err := s.commit(by, (*marmot.Group).CommitProposals); err != nil {
		return err
	}
	if !s.waitRemoved(leaver) {
		return fmt.Errorf("%s never processed the commit of its SelfRemove", leaver.name)
	}
	return nil
}

// race has a and b commit on the same epoch at once: with commit slots one
// is granted and the other told; without, both are accepted and the
// convergence rule decides. Either way every member must end on one state.
func race(s *sim, a, b *member) (string, error) {
	var outs [2]*marmot.Outgoing
	var keys [2][]byte
	for i, m := range []*member{a, b} {
		var err error
		if outs[i], keys[i], err = s.prepare(m, (*marmot.Group).SelfUpdate); err != nil {
			return "", err
		}
	}
	var res [2]commitOutcome
	var wg sync.WaitGroup
	for i, m := range []*member{a, b} {
		wg.Go(func() { res[i] = s.publishCommit(m, outs[i], keys[i]) })
	}
	wg.Wait()
	accepted := 0
	for _, x := range res {
		if x.err == nil {
			accepted++
		} else if x.holder == "" {
			return "", x.err
		}
	}
	if s.slots && accepted != 1 {
		return "", fmt.Errorf("the relay advertises commit slots but granted %d of 2 claims on one slot", accepted)
	}
	if err := s.agree(); err != nil {
		return "", err
	}
	if s.slots {
		return "two commits on one epoch: one slot granted, the other told the holder; every member on one state", nil
	}
	return fmt.Sprintf("two commits on one epoch, %d accepted (no commit slots); the convergence rule brought every member to one state", accepted), nil
}
