//go:build !unix

package main

import "errors"

// errDataDirInUse marks a data directory another relay process holds.
var errDataDirInUse = errors.New("data directory in use")

// lockDataDir does nothing where flock(2) does not exist: two processes on
// one --data-dir are not detected there.
func lockDataDir(string) (release func(), err error) { return func() {}, nil }
