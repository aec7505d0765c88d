package testsvc

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// SmallFS mounts a tmpfs of the given size (as mount's size= option takes
// it: "8m") for the test, unmounted when it ends, and returns its
// directory: a file system that fills up. Mounting needs root, as in CI;
// elsewhere the test is skipped with a loud message, or fails when
// RELAY_TEST_REQUIRE_SERVICES=1.
func SmallFS(t testing.TB, size string) string {
	t.Helper()
	return smallFSWith(t, defaultOptions(), size)
}

func smallFSWith(t testing.TB, o options, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "smallfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		o.unavailable(t, "cannot mount a size-limited tmpfs (needs root): %v", err)
		return ""
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("testsvc: unmount %s: %v", dir, err)
		}
	})
	return dir
}
