// Package vectortest is the test support shared by every mls package: it
// loads the official MLS interoperability vectors from the shared data
// directory beside the checkout (../shared/mls-test-vectors, never copied
// into the project) and checks how many cases each test ran against the
// counts committed under mls/testdata, so that no case can be skipped
// silently. Counter checks the per-file groups of counts_wire.json (wire
// and tree tests); SuiteCounter checks the per-suite sections of
// counts_crypto.json (cipher, key schedule, secret tree). It is imported
// only by tests.
package vectortest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/burrow-relay/burrow/internal/shareddata"
)

// EnvVectorsDir names the directory holding the vector files; when it is
// unset they are found with internal/shareddata (../shared/mls-test-vectors
// beside the checkout; a loud skip without it, a failure under
// RELAY_TEST_REQUIRE_SHARED=1, as .ci/run sets).
const EnvVectorsDir = "MLS_TEST_VECTORS_DIR"

// VectorsDir returns the directory holding the official vector files.
func VectorsDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv(EnvVectorsDir); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			t.Fatalf("vectortest: %s=%s is not a directory", EnvVectorsDir, dir)
		}
		return dir
	}
	return shareddata.Dir(t, "mls-test-vectors")
}

// testdataDir returns mls/testdata, which holds the committed counts: the
// nearest testdata directory with counts_wire.json above the working
// directory.
func testdataDir(t testing.TB) string {
	t.Helper()
	p, ok := shareddata.FindUp(filepath.Join("testdata", "counts_wire.json"))
	if !ok {
		t.Fatal("vectortest: no testdata/counts_wire.json above the working directory")
	}
	return filepath.Dir(p)
}

// Load decodes the JSON vector file name (for example "tree-math.json" or
// "interop-passive/commit.json") into v.
func Load(t testing.TB, name string, v any) {
	t.Helper()
	raw := ReadFile(t, name)
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("vectortest: decode %s: %v", name, err)
	}
}

// ReadFile returns the bytes of the vector file name.
func ReadFile(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(VectorsDir(t), filepath.FromSlash(name)))
	if err != nil {
		t.Fatalf("vectortest: %v", err)
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
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("number field: %w", err)
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("number field %s: %w", b, err)
	}
	*u = Uint(n)
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
// "unsupported suite" for cases of suites this engine does not implement),
// for a counts file that maps each vector file to its groups
// (counts_wire.json, counts_group.json).
type Counter struct {
	countsFile string
	file       string
	counts     map[string]int
}

// NewCounter starts counting for the vector file name against
// counts_wire.json.
func NewCounter(file string) *Counter { return NewCounterIn("counts_wire.json", file) }

// NewCounterIn starts counting for the vector file name against
// mls/testdata/<countsFile>.
func NewCounterIn(countsFile, file string) *Counter {
	return &Counter{countsFile: countsFile, file: file, counts: map[string]int{}}
}

// Add records one case in group.
func (c *Counter) Add(group string) { c.counts[group]++ }

// Suite is the group name for a cipher suite.
func Suite(cs uint64) string { return "suite " + strconv.FormatUint(cs, 10) }

// Check fails t unless every one of the file's total entries was counted and
// the per-group counts equal those committed in the counts file.
func (c *Counter) Check(t testing.TB, total int) {
	t.Helper()
	sum := 0
	for _, n := range c.counts {
		sum += n
	}
	if sum != total {
		t.Errorf("%s: counted %d cases, file has %d", c.file, sum, total)
	}
	raw, err := os.ReadFile(filepath.Join(testdataDir(t), c.countsFile))
	if err != nil {
		t.Fatalf("vectortest: %v", err)
	}
	var all map[string]map[string]int
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatalf("vectortest: %s: %v", c.countsFile, err)
	}
	want, ok := all[c.file]
	if !ok {
		t.Fatalf("vectortest: %s has no entry for %s (ran %v)", c.countsFile, c.file, c.counts)
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

// Section is the expected (or observed) count of one counted unit: cases run
// per supported suite and cases recognised as an unsupported suite.
type Section struct {
	Unit        string         `json:"unit"`
	Run         map[string]int `json:"run"`
	Unsupported map[string]int `json:"unsupported"`
}

// SuiteCounter records the cases a test ran per cipher suite, in the
// format of counts_crypto.json. Keys are "file" or "file/unit".
type SuiteCounter struct {
	seen map[string]*Section
}

// NewSuiteCounter returns an empty counter.
func NewSuiteCounter() *SuiteCounter { return &SuiteCounter{seen: map[string]*Section{}} }

func (c *SuiteCounter) section(key string) *Section {
	s, ok := c.seen[key]
	if !ok {
		s = &Section{Run: map[string]int{}, Unsupported: map[string]int{}}
		c.seen[key] = s
	}
	return s
}

// Ran counts one case of suite under key as fully checked.
func (c *SuiteCounter) Ran(key string, suite uint16) {
	c.section(key).Run[strconv.Itoa(int(suite))]++
}

// Unsupported counts one case of suite under key as belonging to a suite the
// engine does not implement.
func (c *SuiteCounter) Unsupported(key string, suite uint16) {
	c.section(key).Unsupported[strconv.Itoa(int(suite))]++
}

// Check compares the counts recorded under keys with the expected counts in
// mls/testdata/<countsFile>. Any difference (a skipped or an extra case) fails
// the test.
func (c *SuiteCounter) Check(t testing.TB, countsFile string, keys ...string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdataDir(t), countsFile))
	if err != nil {
		t.Fatalf("vectortest: read expected counts: %v", err)
	}
	var want map[string]Section
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("vectortest: decode %s: %v", countsFile, err)
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
