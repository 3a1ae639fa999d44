package main

import (
	"context"
	"errors"
	"io"
)

// runSandbox is a placeholder until its owner lands the real subcommand.
func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
