// Command mkfixtures regenerates interop/fixtures/keypackage-*.json: KeyPackages
// for fresh Nostr identities made by the ts-mls and mls-go peers. Run it from
// the repository root after `npm ci` in interop/tsmls:
//
//	go run ./interop/cmd/mkfixtures
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/burrow-relay/burrow/interop"
)

func main() {
	dir := flag.String("dir", interop.FixturesDir(), "directory to write the fixtures to")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fs, err := interop.Config{}.GenerateKeyPackageFixtures(ctx, *dir, time.Now())
	if err != nil {
		slog.Error("mkfixtures failed", "err", err)
		os.Exit(1)
	}
	for _, f := range fs {
		fmt.Printf("%s\t%s\tnot_before=%d not_after=%d\n", f.Name, f.Tool, f.NotBefore, f.NotAfter)
	}
}
