package marmot

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
)

// envRequireShared, set to 1 (as CI does), turns missing shared test data
// into a failure instead of a skip.
const envRequireShared = "RELAY_TEST_REQUIRE_SHARED"

// sharedDir returns ../shared/<name> found by walking up from the working
// directory: data from other repositories is read from there at test time,
// never copied into the project.
func sharedDir(t testing.TB, name string) string {
	t.Helper()
	rel := filepath.Join("shared", name)
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if st, err := os.Stat(filepath.Join(dir, rel)); err == nil && st.IsDir() {
			return filepath.Join(dir, rel)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	msg := fmt.Sprintf("SHARED TEST DATA NOT FOUND: no %s above the working directory; this test did NOT run", rel)
	if os.Getenv(envRequireShared) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func loadJSON(t testing.TB, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func mustSuite(t testing.TB) *cipher.Suite {
	t.Helper()
	s, err := cipher.New(mls.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var zeroTime time.Time
