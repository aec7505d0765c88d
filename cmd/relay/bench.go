package main

import (
	"context"
	"errors"
	"io"
)

func benchCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	return errors.New("bench: not wired yet")
}
