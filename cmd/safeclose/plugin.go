package main

import (
	"context"
	"errors"
	"io"
)

// runPlugin is a placeholder until its owner lands the real subcommand.
func runPlugin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
