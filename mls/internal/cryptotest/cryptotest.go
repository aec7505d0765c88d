// Package cryptotest is test support for the MLS crypto packages
// (mls/cipher, mls/secrettree, mls/keyschedule): it loads the gzipped
// interoperability vectors under mls/testdata/vectors and counts the cases
// each test ran, per file and suite, against the expected counts committed
// under mls/testdata. It is imported only by tests.
package cryptotest

import (
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// testdataDir returns mls/testdata: the nearest testdata directory holding
// vectors/, searching upwards from the test's working directory (its package
// directory), so that it also works with -trimpath.
func testdataDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("cryptotest: %v", err)
	}
	for range 5 {
		candidate := filepath.Join(dir, "testdata")
		if st, err := os.Stat(filepath.Join(candidate, "vectors")); err == nil && st.IsDir() {
			return candidate
		}
		dir = filepath.Dir(dir)
	}
	t.Fatal("cryptotest: no testdata/vectors directory above the working directory")
	return ""
}

// LoadVectors decodes mls/testdata/vectors/<name>.gz (name like
// "crypto-basics.json") into v.
func LoadVectors(t testing.TB, name string, v any) {
	t.Helper()
	f, err := os.Open(filepath.Join(testdataDir(t), "vectors", name+".gz"))
	if err != nil {
		t.Fatalf("open vectors: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("gunzip %s: %v", name, err)
	}
	if err := json.NewDecoder(zr).Decode(v); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
}

// Hex is binary data written as a lowercase hex string in the vectors.
type Hex []byte

// UnmarshalJSON decodes a hex string.
func (h *Hex) UnmarshalJSON(b []byte) error {
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

// Uint is a number the vectors write either as a JSON number or as a string.
type Uint uint64

// UnmarshalJSON accepts 42 and "42".
func (u *Uint) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("number field: %w", err)
		}
	} else {
		s = string(b)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("number field: %w", err)
	}
	*u = Uint(n)
	return nil
}

// Section is the expected (or observed) count of one counted unit: cases run
// per supported suite and cases recognised as an unsupported suite.
type Section struct {
	Unit        string         `json:"unit"`
	Run         map[string]int `json:"run"`
	Unsupported map[string]int `json:"unsupported"`
}

// Counter records the cases a test ran. Keys are "file" or "file/unit".
type Counter struct {
	seen map[string]*Section
}

// NewCounter returns an empty counter.
func NewCounter() *Counter { return &Counter{seen: map[string]*Section{}} }

func (c *Counter) section(key string) *Section {
	s, ok := c.seen[key]
	if !ok {
		s = &Section{Run: map[string]int{}, Unsupported: map[string]int{}}
		c.seen[key] = s
	}
	return s
}

// Ran counts one case of suite under key as fully checked.
func (c *Counter) Ran(key string, suite uint16) {
	c.section(key).Run[strconv.Itoa(int(suite))]++
}

// Unsupported counts one case of suite under key as belonging to a suite the
// engine does not implement.
func (c *Counter) Unsupported(key string, suite uint16) {
	c.section(key).Unsupported[strconv.Itoa(int(suite))]++
}

// Check compares the counts recorded under keys with the expected counts in
// mls/testdata/<countsFile>. Any difference (a skipped or an extra case) fails
// the test.
func (c *Counter) Check(t testing.TB, countsFile string, keys ...string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdataDir(t), countsFile))
	if err != nil {
		t.Fatalf("read expected counts: %v", err)
	}
	var want map[string]Section
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("decode %s: %v", countsFile, err)
	}
	for _, key := range keys {
		w, ok := want[key]
		if !ok {
			t.Errorf("%s has no expected counts for %q", countsFile, key)
			continue
		}
		got := c.section(key)
		if !sameCounts(got.Run, w.Run) {
			t.Errorf("%s: cases run per suite = %v, want %v (%s)", key, got.Run, w.Run, countsFile)
		}
		if !sameCounts(got.Unsupported, w.Unsupported) {
			t.Errorf("%s: unsupported-suite cases = %v, want %v (%s)", key, got.Unsupported, w.Unsupported, countsFile)
		}
	}
	for key := range c.seen {
		if !slices.Contains(keys, key) {
			t.Errorf("counted key %q is not checked against %s", key, countsFile)
		}
	}
}

func sameCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}
