package main

import (
	"context"
	"errors"
	"io"
)

// runWebhook is a placeholder until its owner lands the real subcommand.
func runWebhook(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
