package shareddata

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDirFromEnv(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "nip44-vectors"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvDir, root)
	if got := Dir(t, "nip44-vectors"); got != filepath.Join(root, "nip44-vectors") {
		t.Fatalf("Dir = %s", got)
	}
}

func TestFindUp(t *testing.T) {
	if _, ok := FindUp("go.mod"); !ok {
		t.Fatal("go.mod not found above the package directory")
	}
	if _, ok := FindUp("no such file anywhere 7f3a"); ok {
		t.Fatal("found a file that does not exist")
	}
}
