// Package shareddata finds, for tests, the data brought in from other
// repositories: the shared directory beside the checkout (../shared:
// mls-test-vectors, nip44-vectors, marmot-fixtures), which is read there
// and never copied into the project. A checkout without it skips the
// calling test loudly, or fails it when RELAY_TEST_REQUIRE_SHARED=1 (as
// .ci/run sets).
package shareddata

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

const (
	// EnvDir names the shared directory; when it is unset the directory is
	// found by walking up from the test's working directory to one holding
	// shared/<sub>.
	EnvDir = "RELAY_TEST_SHARED_DIR"
	// EnvRequire, set to 1, turns missing shared data into a failure.
	EnvRequire = "RELAY_TEST_REQUIRE_SHARED"
)

// Dir returns the directory sub of the shared data (for example
// "nip44-vectors"), or skips (or fails) t when it cannot be found.
func Dir(t testing.TB, sub string) string {
	t.Helper()
	if root := os.Getenv(EnvDir); root != "" {
		dir := filepath.Join(root, sub)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			t.Fatalf("shareddata: %s=%s has no directory %s", EnvDir, root, sub)
		}
		return dir
	}
	if dir, ok := FindUp(filepath.Join("shared", sub)); ok {
		return dir
	}
	msg := fmt.Sprintf("shareddata: SHARED DATA NOT FOUND: no shared/%s in any directory above the working directory "+
		"(put the shared data beside the checkout, or set %s); this test did NOT run", sub, EnvDir)
	if os.Getenv(EnvRequire) == "1" {
		t.Fatal(msg + " and " + EnvRequire + "=1 requires it")
	} else {
		t.Skip(msg)
	}
	return ""
}

// FindUp returns the first path, starting at the working directory and
// walking towards the root, at which rel names an existing entry. It works
// with -trimpath and from any package depth.
func FindUp(rel string) (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		candidate := filepath.Join(dir, rel)
		if _, err := os.Stat(candidate); err == nil {
			return candidate, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
