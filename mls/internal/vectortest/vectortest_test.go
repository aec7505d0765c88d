package vectortest

import (
	"encoding/json"
	"fmt"
	"testing"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(f string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(f, args...))
}
func (r *recorder) Fatalf(f string, args ...any) { r.Errorf(f, args...) }

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
