package vectortest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/burrow-relay/burrow/internal/shareddata"
)

// recorder is a testing.TB that records failures and skips instead of
// failing or skipping.
type recorder struct {
	testing.TB
	errors  []string
	skipped []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(f string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(f, args...))
}
func (r *recorder) Fatalf(f string, args ...any) { r.Errorf(f, args...) }
func (r *recorder) Fatal(args ...any)            { r.errors = append(r.errors, fmt.Sprint(args...)) }
func (r *recorder) Skip(args ...any)             { r.skipped = append(r.skipped, fmt.Sprint(args...)) }

// TestVectorsDir checks how the shared vector directory is found: by
// walking up from the working directory, through the environment
// override, and that its absence skips loudly, or fails when
// RELAY_TEST_REQUIRE_SHARED=1.
func TestVectorsDir(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "checkout", "mls", "pkg")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(deep)
	t.Setenv(EnvVectorsDir, "")
	t.Setenv(shareddata.EnvDir, "")
	for _, require := range []string{"", "1"} {
		t.Setenv(shareddata.EnvRequire, require)
		r := &recorder{TB: t}
		if dir := VectorsDir(r); dir != "" {
			t.Fatalf("found %q in an empty tree", dir)
		}
		if require == "1" {
			if len(r.errors) != 1 || len(r.skipped) != 0 || !strings.Contains(r.errors[0], "NOT FOUND") {
				t.Errorf("required and missing: errors %q, skips %q; want one failure", r.errors, r.skipped)
			}
		} else if len(r.skipped) != 1 || len(r.errors) != 0 || !strings.Contains(r.skipped[0], "did NOT run") {
			t.Errorf("missing: errors %q, skips %q; want one loud skip", r.errors, r.skipped)
		}
	}
	want := filepath.Join(root, "shared", "mls-test-vectors")
	if err := os.MkdirAll(want, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	if got := VectorsDir(r); got != want || len(r.errors)+len(r.skipped) != 0 {
		t.Errorf("walk up: %q (%q %q), want %q", got, r.errors, r.skipped, want)
	}
	other := t.TempDir()
	t.Setenv(EnvVectorsDir, other)
	if got := VectorsDir(r); got != other {
		t.Errorf("override: %q, want %q", got, other)
	}
	t.Setenv(EnvVectorsDir, filepath.Join(other, "absent"))
	if VectorsDir(r); len(r.errors) != 1 {
		t.Errorf("override naming no directory: errors %q, want one", r.errors)
	}
}

// TestSuiteCounterCatchesSkips checks that Check fails when a supported-suite
// case is missing, an extra case is run, or a key is not checked.
func TestSuiteCounterCatchesSkips(t *testing.T) {
	full := func(c *SuiteCounter) {
		for _, s := range []uint16{1, 2, 3} {
			c.Ran("crypto-basics.json", s)
		}
		for _, s := range []uint16{4, 5, 6, 7} {
			c.Unsupported("crypto-basics.json", s)
		}
	}
	tests := []struct {
		name     string
		record   func(c *SuiteCounter)
		wantFail bool
	}{
		{"complete", full, false},
		{"suite 2 skipped", func(c *SuiteCounter) {
			c.Ran("crypto-basics.json", 1)
			c.Ran("crypto-basics.json", 3)
			for _, s := range []uint16{4, 5, 6, 7} {
				c.Unsupported("crypto-basics.json", s)
			}
		}, true},
		{"unsupported not counted", func(c *SuiteCounter) {
			for _, s := range []uint16{1, 2, 3} {
				c.Ran("crypto-basics.json", s)
			}
		}, true},
		{"extra case", func(c *SuiteCounter) { full(c); c.Ran("crypto-basics.json", 1) }, true},
		{"unchecked key", func(c *SuiteCounter) { full(c); c.Ran("other.json", 1) }, true},
	}
	for _, tc := range tests {
		c := NewSuiteCounter()
		tc.record(c)
		r := &recorder{TB: t}
		c.Check(r, "counts_crypto.json", "crypto-basics.json")
		if failed := len(r.errors) > 0; failed != tc.wantFail {
			t.Errorf("%s: failed=%v (%v), want %v", tc.name, failed, r.errors, tc.wantFail)
		}
	}
}

func TestUintAcceptsNumbersAndStrings(t *testing.T) {
	tests := []struct {
		in      string
		want    Uint
		wantErr bool
	}{
		{`42`, 42, false}, {`"2694881440"`, 2694881440, false}, {`"x"`, 0, true}, {`-1`, 0, true},
	}
	for _, tc := range tests {
		var u Uint
		err := json.Unmarshal([]byte(tc.in), &u)
		if (err != nil) != tc.wantErr || u != tc.want {
			t.Errorf("%s: %d, %v", tc.in, u, err)
		}
	}
}

// TestCounterCatchesSkips checks the counts_wire.json side: a missing or
// extra case, a case counted under another group, or a total that does not
// match the file fails the check.
func TestCounterCatchesSkips(t *testing.T) {
	full := func(c *Counter) {
		for range 10 {
			c.Add("all")
		}
	}
	tests := []struct {
		name     string
		record   func(c *Counter)
		total    int
		wantFail bool
	}{
		{"complete", full, 10, false},
		{"one skipped", func(c *Counter) {
			for range 9 {
				c.Add("all")
			}
		}, 10, true},
		{"extra case", func(c *Counter) { full(c); c.Add("all") }, 11, true},
		{"other group", func(c *Counter) { full(c); c.Add(Suite(4) + " (unsupported)") }, 11, true},
		{"total differs", full, 12, true},
	}
	for _, tc := range tests {
		c := NewCounter("tree-math.json")
		tc.record(c)
		r := &recorder{TB: t}
		c.Check(r, tc.total)
		if failed := len(r.errors) > 0; failed != tc.wantFail {
			t.Errorf("%s: failed=%v (%v), want %v", tc.name, failed, r.errors, tc.wantFail)
		}
	}
	// The same rules against counts_group.json, where a failed case is
	// counted under "suite N (failed)", a group no committed count has.
	for _, tc := range []struct {
		name     string
		group    string
		wantFail bool
	}{{"passed", Suite(1), false}, {"failed", Suite(1) + " (failed)", true}} {
		c := NewCounterIn("counts_group.json", "passive-client-random.json")
		c.Add(tc.group)
		r := &recorder{TB: t}
		c.Check(r, 1)
		if failed := len(r.errors) > 0; failed != tc.wantFail {
			t.Errorf("counts_group.json, %s: failed=%v (%v), want %v", tc.name, failed, r.errors, tc.wantFail)
		}
	}
}

func TestHexAndOptUint(t *testing.T) {
	tests := []struct {
		in      string
		want    []byte
		wantErr bool
	}{
		{`"00ff"`, []byte{0, 0xff}, false}, {`null`, nil, false}, {`""`, []byte{}, false}, {`"0g"`, nil, true}, {`12`, nil, true},
	}
	for _, tc := range tests {
		var h Hex
		err := json.Unmarshal([]byte(tc.in), &h)
		if (err != nil) != tc.wantErr || string(h) != string(tc.want) || (tc.want == nil && h != nil && !tc.wantErr) {
			t.Errorf("Hex %s: %x, %v", tc.in, []byte(h), err)
		}
	}
	for _, tc := range []struct {
		in   string
		want OptUint
	}{{`null`, OptUint{}}, {`7`, OptUint{7, true}}, {`"7"`, OptUint{7, true}}} {
		var o OptUint
		if err := json.Unmarshal([]byte(tc.in), &o); err != nil || o != tc.want {
			t.Errorf("OptUint %s: %+v, %v", tc.in, o, err)
		}
	}
}
