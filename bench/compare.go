package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
)

// Target is one relay a comparison runs against. Start brings it up (fresh storage each time)
// and returns its websocket URL and a stop function that tears it down, storage included.
type Target struct {
	Name string
	// Baseline names the target this one is compared with in the table; empty for none.
	Baseline string
	Start    func(ctx context.Context) (url string, stop func(context.Context) error, err error)
}

// Compare runs cfg against each target in turn, one at a time so they never share the CPU, and
// returns one Row per target that completed. It stops at the first target that fails to start,
// run or stop, returning the rows so far with the error. cfg.URL is ignored.
func Compare(ctx context.Context, cfg Config, targets []Target) ([]Row, error) {
	rows := make([]Row, 0, len(targets))
	for _, t := range targets {
		var (
			res Result
			err error
		)
		// The label follows every goroutine the target starts (an in-process relay's included),
		// so one --cpuprofile of a comparison splits by target (pprof -tagfocus target=NAME).
		pprof.Do(ctx, pprof.Labels("target", t.Name), func(ctx context.Context) { res, err = runTarget(ctx, cfg, t) })
		if err != nil {
			return rows, fmt.Errorf("bench: target %s: %w", t.Name, err)
		}
		rows = append(rows, Row{Name: t.Name, Result: res, Baseline: t.Baseline})
	}
	return rows, nil
}

func runTarget(ctx context.Context, cfg Config, t Target) (res Result, err error) {
	err = t.With(ctx, func(url string) error {
		cfg.URL = url
		res, err = Run(ctx, cfg)
		return err
	})
	return res, err
}

// With starts t, calls run with its URL and stops it, whatever run returned; a failure to stop
// is joined to run's error.
func (t Target) With(ctx context.Context, run func(url string) error) (err error) {
	url, stop, err := t.Start(ctx)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer func() {
		if stopErr := stop(context.WithoutCancel(ctx)); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop: %w", stopErr))
		}
	}()
	return run(url)
}

// BaselineTarget is the stock khatru baseline built from dir (the repository's baseline/). With
// an empty adminURL it keeps events in memory; otherwise each start creates a scratch database
// through adminURL (see TempDatabase) and stopping drops it.
func BaselineTarget(name, dir, adminURL string) Target {
	return Target{
		Name: name,
		Start: func(ctx context.Context) (string, func(context.Context) error, error) {
			if adminURL == "" {
				url, stop, err := StartBaseline(ctx, dir, "")
				if err != nil {
					return "", nil, err
				}
				return url, func(context.Context) error { stop(); return nil }, nil
			}
			dbURL, drop, err := TempDatabase(ctx, adminURL)
			if err != nil {
				return "", nil, err
			}
			url, stop, err := StartBaseline(ctx, dir, dbURL)
			if err != nil {
				return "", nil, errors.Join(err, drop(context.WithoutCancel(ctx)))
			}
			return url, func(ctx context.Context) error {
				stop()
				return drop(ctx)
			}, nil
		},
	}
}
