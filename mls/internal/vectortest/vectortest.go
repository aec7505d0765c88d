// Package vectortest loads the MLS interoperability test vectors committed
// under mls/testdata/vectors and checks how many cases each test ran against
// the counts committed in mls/testdata/counts_wire.json, so that no case can
// be skipped silently. It is for tests only.
package vectortest

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"testing"
)

// testdataDir locates mls/testdata from this source file, so tests in any
// mls package find the vectors whatever their working directory.
func testdataDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("vectortest: cannot locate source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata")
}

// Load decodes the gzipped JSON vector file name (for example
// "tree-math.json") into v.
func Load(t testing.TB, name string, v any) {
	t.Helper()
	raw := ReadFile(t, name)
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("vectortest: decode %s: %v", name, err)
	}
}

// ReadFile returns the decompressed bytes of the vector file name.
func ReadFile(t testing.TB, name string) []byte {
	t.Helper()
	path := filepath.Join(testdataDir(t), "vectors", name+".gz")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("vectortest: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("vectortest: %s: %v", path, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("vectortest: %s: %v", path, err)
	}
	return raw
}

// Hex is binary data written as a hex string in the vectors.
type Hex []byte

// UnmarshalJSON decodes a hex string (null gives nil).
func (h *Hex) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*h = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("hex field: %w", err)
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("hex field: %w", err)
	}
	*h = d
	return nil
}

// Uint is an unsigned number that the vectors write either as a JSON number
// or as a decimal string.
type Uint uint64

// UnmarshalJSON accepts 12 and "12".
func (u *Uint) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("number field %s: %w", b, err)
	}
	*u = Uint(v)
	return nil
}

// OptUint is an optional<uint>: null in the JSON decodes with Valid false.
type OptUint struct {
	Value uint64
	Valid bool
}

// UnmarshalJSON accepts null, 12 and "12".
func (o *OptUint) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*o = OptUint{}
		return nil
	}
	var u Uint
	if err := u.UnmarshalJSON(b); err != nil {
		return err
	}
	*o = OptUint{Value: uint64(u), Valid: true}
	return nil
}

// Counter counts the cases a test ran from one vector file, by group (a
// suite such as "suite 1", "all" for files without suites, or
// "unsupported suite" for cases of suites this engine does not implement).
type Counter struct {
	file   string
	counts map[string]int
}

// NewCounter starts counting for the vector file name.
func NewCounter(file string) *Counter {
	return &Counter{file: file, counts: map[string]int{}}
}

// Add records one case in group.
func (c *Counter) Add(group string) { c.counts[group]++ }

// Suite is the group name for a cipher suite.
func Suite(cs uint64) string { return "suite " + strconv.FormatUint(cs, 10) }

// Check fails t unless every one of the file's total entries was counted and
// the per-group counts equal those committed in counts_wire.json.
func (c *Counter) Check(t testing.TB, total int) {
	t.Helper()
	sum := 0
	for _, n := range c.counts {
		sum += n
	}
	if sum != total {
		t.Errorf("%s: counted %d cases, file has %d", c.file, sum, total)
	}
	raw, err := os.ReadFile(filepath.Join(testdataDir(t), "counts_wire.json"))
	if err != nil {
		t.Fatalf("vectortest: %v", err)
	}
	var all map[string]map[string]int
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatalf("vectortest: counts_wire.json: %v", err)
	}
	want, ok := all[c.file]
	if !ok {
		t.Fatalf("vectortest: counts_wire.json has no entry for %s (ran %v)", c.file, c.counts)
	}
	groups := map[string]bool{}
	for g := range want {
		groups[g] = true
	}
	for g := range c.counts {
		groups[g] = true
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		if c.counts[g] != want[g] {
			t.Errorf("%s [%s]: ran %d cases, expected %d", c.file, g, c.counts[g], want[g])
		}
	}
}
