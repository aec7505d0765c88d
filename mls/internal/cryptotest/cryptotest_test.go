package cryptotest

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

// TestCounterCatchesSkips checks that Check fails when a supported-suite
// case is missing, an extra case is run, or a key is not checked.
func TestCounterCatchesSkips(t *testing.T) {
	full := func(c *Counter) {
		for _, s := range []uint16{1, 2, 3} {
			c.Ran("crypto-basics.json", s)
		}
		for _, s := range []uint16{4, 5, 6, 7} {
			c.Unsupported("crypto-basics.json", s)
		}
	}
	tests := []struct {
		name     string
		record   func(c *Counter)
		wantFail bool
	}{
		{"complete", full, false},
		{"suite 2 skipped", func(c *Counter) {
			c.Ran("crypto-basics.json", 1)
			c.Ran("crypto-basics.json", 3)
			for _, s := range []uint16{4, 5, 6, 7} {
				c.Unsupported("crypto-basics.json", s)
			}
		}, true},
		{"unsupported not counted", func(c *Counter) {
			for _, s := range []uint16{1, 2, 3} {
				c.Ran("crypto-basics.json", s)
			}
		}, true},
		{"extra case", func(c *Counter) { full(c); c.Ran("crypto-basics.json", 1) }, true},
		{"unchecked key", func(c *Counter) { full(c); c.Ran("other.json", 1) }, true},
	}
	for _, tc := range tests {
		c := NewCounter()
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
