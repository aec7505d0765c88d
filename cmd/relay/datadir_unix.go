//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// dataDirLockName is the file in --data-dir whose lock one relay process
// holds while it runs: SQLite would let a second process open the same
// database, and two relays on one embedded store each believe they are
// the only sequencer and hand-out of its groups and KeyPackages.
const dataDirLockName = "relay.lock"

// errDataDirInUse marks a data directory another relay process holds.
var errDataDirInUse = errors.New("data directory in use")

// lockDataDir takes an exclusive, non-blocking lock on dir's lock file and
// writes this process's id into it. The lock goes with the process (a
// killed relay leaves no stale lock); release gives it back sooner.
func lockDataDir(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create --data-dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, dataDirLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		who := "another relay process"
		if pid := strings.TrimSpace(string(holder)); pid != "" {
			if _, perr := strconv.Atoi(pid); perr == nil {
				who += " (pid " + pid + ")"
			}
		}
		return nil, fmt.Errorf("%w: %s is using --data-dir %s; stop it first, or give each process its own --data-dir (several instances share one store through --database-url)",
			errDataDirInUse, who, dir)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
