package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthcheckCommand asks a running relay's /readyz (the address of
// --listen, with a wildcard host read as loopback) and exits 0 when it is
// ready (degraded included: see readyz in package server), 1 otherwise: a
// container health check for images without a shell or curl (the
// distroless image).
func healthcheckCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	f := newEnvFlags("relay healthcheck")
	listen := "127.0.0.1:3334"
	timeout := 5 * time.Second
	f.String(&listen, "listen", listen, "the address the relay listens on (a 0.0.0.0 or [::] host is asked on loopback)")
	f.Duration(&timeout, "timeout", timeout, "how long to wait for the answer")
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			f.usage(stdout, "usage: relay healthcheck [--listen host:port] [--timeout d]")
			return errHelp
		}
	}
	if err := f.parse(args, lookup); err != nil {
		return usageError{err}
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return usageError{fmt.Errorf("--listen %q: want host:port: %w", listen, err)}
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck %s: HTTP %d: %s", url, resp.StatusCode, body)
	}
	// 200 "degraded: redis unreachable" is ready: the relay serves its
	// own clients while an optional dependency is away, and a container
	// restarted for it would serve nobody (docs/operations.md).
	if msg, ok := strings.CutPrefix(strings.TrimSpace(string(body)), "degraded: "); ok {
		fmt.Fprintf(stdout, "ready, degraded (%s): %s\n", msg, url)
		return nil
	}
	fmt.Fprintf(stdout, "ready: %s\n", url)
	return nil
}
