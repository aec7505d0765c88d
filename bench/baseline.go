package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrBaseline marks a failure to build or start the stock khatru baseline.
var ErrBaseline = errors.New("bench: baseline")

// baselineStartTimeout bounds the wait for a started baseline to answer, on top of ctx.
const baselineStartTimeout = 30 * time.Second

// listenPrefix is the line the baseline prints once its socket is bound.
const listenPrefix = "listening on "

// StartBaseline builds the baseline module in dir (the repository's baseline/) into a temporary
// directory, starts it on a free loopback port, and returns its websocket URL once it answers
// NIP-11 over HTTP. An empty databaseURL keeps events in memory; otherwise it is passed to the
// baseline's --database-url. ctx bounds the build and the start-up only: the process runs until
// stop is called, which ends it and removes the temporary directory (calling stop twice is safe).
func StartBaseline(ctx context.Context, dir, databaseURL string) (url string, stop func(), err error) {
	tmp, err := os.MkdirTemp("", "burrow-baseline-*")
	if err != nil {
		return "", nil, fmt.Errorf("%w: temp dir: %w", ErrBaseline, err)
	}
	cleanupTmp := func() { _ = os.RemoveAll(tmp) }

	bin := filepath.Join(tmp, "baseline")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir = dir
	// The baseline is its own module; a go.work above it must not pull it into another build.
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		cleanupTmp()
		return "", nil, fmt.Errorf("%w: go build in %s: %w: %s", ErrBaseline, dir, err, strings.TrimSpace(string(out)))
	}

	logPath := filepath.Join(tmp, "baseline.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		cleanupTmp()
		return "", nil, fmt.Errorf("%w: log file: %w", ErrBaseline, err)
	}
	args := []string{"--listen", "127.0.0.1:0"}
	if databaseURL != "" {
		args = append(args, "--database-url", databaseURL)
	}
	// Not CommandContext: the process must outlive the start-up context.
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = logFile.Close()
		cleanupTmp()
		return "", nil, fmt.Errorf("%w: stdout pipe: %w", ErrBaseline, err)
	}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		cleanupTmp()
		return "", nil, fmt.Errorf("%w: start: %w", ErrBaseline, err)
	}

	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			_ = logFile.Close()
			cleanupTmp()
		})
	}
	fail := func(err error) (string, func(), error) {
		tail := logTail(logPath)
		stop()
		return "", nil, fmt.Errorf("%w: %w; its log ends: %s", ErrBaseline, err, tail)
	}

	// The first stdout line names the bound address; the rest is drained so the child never
	// blocks on a full pipe.
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), listenPrefix); ok {
				select {
				case addrCh <- addr:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()

	startCtx, cancel := context.WithTimeout(ctx, baselineStartTimeout)
	defer cancel()
	select {
	case url = <-addrCh:
	case <-exited:
		return fail(errors.New("exited before listening"))
	case <-startCtx.Done():
		return fail(fmt.Errorf("no listening line: %w", startCtx.Err()))
	}
	if err := WaitNIP11(startCtx, url, exited); err != nil {
		return fail(err)
	}
	return url, stop, nil
}

// WaitNIP11 polls the relay's NIP-11 document at wsURL (its http twin)
// until it is served, the process behind it exits (exited closes) or ctx
// ends.
func WaitNIP11(ctx context.Context, wsURL string, exited <-chan struct{}) error {
	httpURL := "http" + strings.TrimPrefix(wsURL, "ws")
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, httpURL, nil)
		if err != nil {
			return fmt.Errorf("NIP-11 request: %w", err)
		}
		req.Header.Set("Accept", "application/nostr+json")
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-tick.C:
		case <-exited:
			return errors.New("exited before answering")
		case <-ctx.Done():
			return fmt.Errorf("not answering at %s: %w", httpURL, ctx.Err())
		}
	}
}

// logTail returns the last few hundred bytes of the baseline's log, for error messages.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	const keep = 600
	if len(data) > keep {
		data = data[len(data)-keep:]
	}
	if len(data) == 0 {
		return "(empty)"
	}
	return strings.TrimSpace(string(data))
}
