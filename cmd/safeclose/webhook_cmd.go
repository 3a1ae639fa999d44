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
	_, args, err := leafArgs("webhook", args, stdout, "verify")
	if err != nil {
		return err
	}
	var o verifyOpts
	if err := parseFlags(verifyFlagSet(&o), args, stdout); err != nil {
		return err
	}
	if o.bodyPath == "" || o.header == "" || o.jwkPath == "" {
		return usageErrorf("webhook verify", "webhook verify: -body, -header and -jwk are required")
	}
	body, err := os.ReadFile(o.bodyPath)
	if err != nil {
		return err
	}
	hdr := o.header
	if strings.HasPrefix(hdr, "@") {
		b, err := os.ReadFile(hdr[1:])
		if err != nil {
			return err
		}
		hdr = strings.TrimSpace(string(b))
	}
	jwk, err := os.ReadFile(o.jwkPath)
	if err != nil {
		return err
	}
	when := time.Now()
	if o.at != 0 {
		when = time.Unix(o.at, 0)
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

type verifyOpts struct {
	bodyPath, header, jwkPath string
	at                        int64
}

func verifyFlagSet(o *verifyOpts) *flag.FlagSet {
	fs := flag.NewFlagSet("webhook verify", flag.ContinueOnError)
	fs.StringVar(&o.bodyPath, "body", "", "file with the raw webhook body, byte for byte")
	fs.StringVar(&o.header, "header", "", "the Plaid-Verification header value, or @FILE")
	fs.StringVar(&o.jwkPath, "jwk", "", "file with the JWK (bare, or Plaid's /webhook_verification_key/get answer)")
	fs.Int64Var(&o.at, "at", 0, "verify as of this Unix time (default: now)")
	return fs
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
