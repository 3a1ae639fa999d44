package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/safeclose/safeclose/internal/webhook"
)

// runWebhook implements `safeclose webhook verify`: Plaid's verification
// steps, offline, reporting which step failed.
func runWebhook(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("usage: safeclose webhook verify --body FILE --header JWT|@FILE --jwk FILE [--at UNIXTIME]")
	}
	fs := flag.NewFlagSet("webhook verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bodyPath := fs.String("body", "", "file with the raw webhook body, byte for byte")
	header := fs.String("header", "", "the Plaid-Verification header value, or @FILE")
	jwkPath := fs.String("jwk", "", "file with the JWK (bare, or Plaid's /webhook_verification_key/get answer)")
	at := fs.Int64("at", 0, "verify as of this Unix time (default: now)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *bodyPath == "" || *header == "" || *jwkPath == "" {
		return errors.New("webhook verify: --body, --header and --jwk are required")
	}
	body, err := os.ReadFile(*bodyPath)
	if err != nil {
		return err
	}
	hdr := *header
	if strings.HasPrefix(hdr, "@") {
		b, err := os.ReadFile(hdr[1:])
		if err != nil {
			return err
		}
		hdr = strings.TrimSpace(string(b))
	}
	jwk, err := os.ReadFile(*jwkPath)
	if err != nil {
		return err
	}
	when := time.Now()
	if *at != 0 {
		when = time.Unix(*at, 0)
	}
	step, verr := verifyOffline(hdr, body, jwk, when)
	steps := []string{"header", "alg", "key", "signature", "iat", "body_sha256"}
	failed := false
	for _, s := range steps {
		switch {
		case failed:
			fmt.Fprintf(stdout, "  %-12s skipped\n", s)
		case s == step:
			fmt.Fprintf(stdout, "  %-12s FAILED: %v\n", s, verr)
			failed = true
		default:
			fmt.Fprintf(stdout, "  %-12s ok\n", s)
		}
	}
	if verr != nil {
		return fmt.Errorf("webhook does not verify (step %s)", step)
	}
	fmt.Fprintln(stdout, "webhook verifies")
	return nil
}

// verifyOffline checks a Plaid webhook against one JWK (a bare JWK or
// Plaid's {"key":{…}} answer) as of at, with the same steps as the receiver.
// On failure step names the first step that failed.
func verifyOffline(header string, body, jwk []byte, at time.Time) (step string, err error) {
	k, err := webhook.ParseKeyJSON(jwk)
	if err != nil {
		return "key", err
	}
	if _, err := webhook.VerifyOffline(header, body, k, at); err != nil {
		if ve, ok := errors.AsType[*webhook.VerifyError](err); ok {
			return ve.Step.String(), err
		}
		return "unknown", err
	}
	return "", nil
}
