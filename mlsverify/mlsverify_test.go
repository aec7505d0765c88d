package mlsverify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/shareddata"
	"github.com/burrow-relay/burrow/marmot"
)

// TestKnownAnswers: the engine reproduces the values taken from the
// official vectors (kat.go cites each).
func TestKnownAnswers(t *testing.T) {
	cs := knownAnswers()
	if len(cs) != 4 {
		t.Fatalf("%d known-answer checks, want 4", len(cs))
	}
	for _, c := range cs {
		if c.Status != StatusPass {
			t.Errorf("%s: %s %s", c.Name, c.Status, c.Detail)
		}
	}
}

// TestRunVectors runs the official files, then shows the runner failing:
// a directory without them, and a file with one value changed.
func TestRunVectors(t *testing.T) {
	dir := shareddata.Dir(t, "mls-test-vectors")
	for _, c := range RunVectors(dir) {
		if c.Status == StatusFail {
			t.Errorf("%s: %s", c.Name, c.Detail)
		}
	}

	empty := t.TempDir()
	for _, c := range RunVectors(empty) {
		top := !strings.Contains(c.Name, "interop-passive/") && !strings.Contains(c.Name, "[")
		if top && c.Status != StatusFail {
			t.Errorf("%s in an empty directory: %s", c.Name, c.Status)
		}
	}

	raw, err := os.ReadFile(filepath.Join(dir, "key-schedule.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The suite 1 case's first epoch_authenticator, one digit changed.
	const ea = "7375d449cde2c5a856c13c8eb52c16bf9ef29eceef59b09d1f946bd1bac24643"
	if !bytes.Contains(raw, []byte(ea)) {
		t.Fatal("the vector file does not hold the expected value")
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "key-schedule.json"), bytes.Replace(raw, []byte(ea), []byte("8"+ea[1:]), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range RunVectors(bad) {
		if c.Name == "vectors: key-schedule.json" && (c.Status != StatusFail || !strings.Contains(c.Detail, "suite 1 epoch 0")) {
			t.Errorf("a changed vector: %s %s", c.Status, c.Detail)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Relays: []string{"http://relay.example"}},
		{Relays: []string{"ws://relay.example"}, Members: 2},
		{Relays: []string{"ws://relay.example"}, Scenarios: []string{"nonsense"}},
	} {
		if _, err := Run(context.Background(), c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
	}
	c, err := Config{Relays: []string{"ws://relay.example"}}.withDefaults()
	if err != nil || c.Members != 20 || c.Seed == 0 || c.Conns != 8 || len(c.Scenarios) != len(Scenarios()) {
		t.Errorf("defaults: %+v %v", c, err)
	}
}

// TestSeedReproducible: one seed gives the same accounts, KeyPackage keys
// and group ids; another seed gives others.
func TestSeedReproducible(t *testing.T) {
	type world struct {
		account marmot.Pubkey
		initKey []byte
		group   [32]byte
	}
	make1 := func(seed uint64) world {
		cfg, err := Config{Relays: []string{"ws://127.0.0.1:1"}, Seed: seed}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := newSim(ctx, cfg, ScenarioInvite, &Result{}, marmot.RelayInfo{})
		m, err := s.newMember(0, s.conns[0])
		if err != nil {
			t.Fatal(err)
		}
		g, err := marmot.CreateGroup(m.acct, marmot.NewGroupParams{Relays: cfg.Relays}, m.opts())
		if err != nil {
			t.Fatal(err)
		}
		return world{m.pub(), m.bundle.KeyPackage.InitKey, g.NostrGroupID()}
	}
	a, b, c := make1(42), make1(42), make1(43)
	if a.account != b.account || !bytes.Equal(a.initKey, b.initKey) || a.group != b.group {
		t.Error("the same seed gave different accounts, keys or groups")
	}
	if a.account == c.account || bytes.Equal(a.initKey, c.initKey) || a.group == c.group {
		t.Error("another seed gave the same accounts, keys or groups")
	}
}

func TestReportOutput(t *testing.T) {
	res := Result{Scenario: "s"}
	res.check("works", StatusPass, "fine")
	res.check("optional", StatusWarn, "missing %d", 2)
	res.metric("commits", 3)
	res.metric("delivery_p99_ms", 12.5)
	res.note("a note")
	res.finish(1500 * time.Millisecond)
	bad := Result{Scenario: "t"}
	bad.check("broken", StatusFail, "no")
	bad.finish(time.Second)
	empty := Result{Scenario: "u"}
	empty.finish(0)
	if res.Status != StatusPass || bad.Status != StatusFail || empty.Status != StatusFail {
		t.Fatalf("statuses %s %s %s", res.Status, bad.Status, empty.Status)
	}
	rep := &Report{Relays: []RelayReport{{URL: "ws://x"}}, Seed: 9, Members: 3, Scenarios: []Result{res, bad}}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"seed 9, 3 members", "s  ", "PASS", "12.5ms", "warn  optional: missing 2", "fail  broken: no", "note  a note", "\nFAIL: 2 scenarios"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.Scenarios[0].Millis != 1500 || back.Scenarios[0].Metrics["commits"] != 3 {
		t.Fatalf("JSON: %v %+v", err, back)
	}
	if got := back.Scenarios[1].Failed(); len(got) != 1 || got[0] != "broken" {
		t.Errorf("Failed() = %v", got)
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for p, want := range map[int]time.Duration{50: 5, 99: 10, 10: 1, 100: 10} {
		if got := percentile(ds, p); got != want {
			t.Errorf("p%d = %d, want %d", p, got, want)
		}
	}
}

func TestTalkers(t *testing.T) {
	ms := make([]*member, 20)
	for i := range ms {
		ms[i] = &member{}
	}
	got := talkers(ms)
	if len(got) != maxTalkers || got[0] != ms[0] {
		t.Fatalf("%d talkers", len(got))
	}
	seen := map[*member]bool{}
	for _, m := range got {
		if seen[m] {
			t.Fatal("a member picked twice")
		}
		seen[m] = true
	}
	if len(talkers(ms[:3])) != 3 {
		t.Error("a small group should all talk")
	}
}
