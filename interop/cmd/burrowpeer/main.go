// Command burrowpeer runs Burrow's MLS engine as an interop peer process:
// it reads the line-delimited JSON requests of interop/README.md on stdin
// and answers each on stdout, like the ts-mls and mls-go peers.
//
//	burrowpeer [-private-handshake] [-add-with-path]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/burrow-relay/burrow/interop"
	"github.com/burrow-relay/burrow/mls"
)

func main() {
	private := flag.Bool("private-handshake", false, "send commits as PrivateMessage instead of PublicMessage")
	addWithPath := flag.Bool("add-with-path", false, "give add-only commits an UpdatePath")
	flag.Parse()
	cfg := interop.EngineConfig{AddWithPath: *addWithPath}
	if *private {
		cfg.HandshakeWireFormat = mls.WireFormatPrivateMessage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := interop.NewEngine(cfg).Serve(ctx, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "burrowpeer:", err)
		os.Exit(1)
	}
}
