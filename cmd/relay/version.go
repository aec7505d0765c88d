package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"runtime/debug"

	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/burrow-relay/burrow/storage/sqlite"
)

// versionCommand prints the version, the commit, the Go version, the
// signature verifier and the schema version of the store the serve flags
// (--data-dir, --database-url) name, without changing the store. A store
// that cannot be read is a failure (exit status 1) after the other lines.
func versionCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	cfg, err := parseServeConfig(args, lookup, stderr)
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintf(stdout, "relay %s\n", version)
	fmt.Fprintf(stdout, "commit:   %s\n", buildCommit())
	fmt.Fprintf(stdout, "go:       %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(stdout, "verifier: %s\n", signatureVerifier)
	var (
		store           string
		current, latest int
	)
	if cfg.DatabaseURL != "" {
		store = "postgresql " + postgres.RedactURL(cfg.DatabaseURL)
		current, latest, err = postgres.SchemaVersion(ctx, cfg.DatabaseURL)
	} else {
		path := filepath.Join(cfg.DataDir, "relay.db")
		store = "sqlite " + path
		current, latest, err = sqlite.SchemaVersion(ctx, path)
	}
	if err != nil {
		fmt.Fprintf(stdout, "store:    %s, schema unreadable\n", store)
		return err
	}
	state := "up to date"
	switch {
	case current == 0:
		state = "empty: the first start creates it"
	case current < latest:
		state = fmt.Sprintf("the next start migrates it to %d", latest)
	case current > latest && cfg.DatabaseURL != "":
		// PostgreSQL's migrations do not check: an older instance keeps
		// running beside a newer one during a rolling upgrade.
		state = "newer than this binary, which would run on it unchecked: see docs/operations.md, \"Upgrades\""
	case current > latest:
		state = "newer than this binary, which will refuse it"
	}
	fmt.Fprintf(stdout, "store:    %s, schema %d (this binary: %d; %s)\n", store, current, latest, state)
	return nil
}

// buildCommit is the VCS revision the binary was built from, as the go
// command stamps it, or says why it is unknown.
func buildCommit() string {
	if commit != "" {
		return commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = " (with uncommitted changes)"
			}
		}
	}
	if rev == "" {
		return "unknown (built without version control information: go run, -buildvcs=false, or not from a git checkout)"
	}
	return rev + modified
}
