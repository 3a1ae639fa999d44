package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Issue 10.8: `safeclose help`, `help CMD` and `CMD -h` print usage with
// examples and exit 0; an unknown subcommand or a bad flag exits 2 with usage.
func TestHelpAndUsageErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   []string // substrings wanted on stdout
		stderr   []string // substrings wanted on stderr
		noStdout bool
	}{
		{name: "help", args: []string{"help"}, stdout: []string{"subcommands:", "serve", "webhooks", "list or replay dead-lettered webhooks"}},
		{name: "-h", args: []string{"-h"}, stdout: []string{"flags of safeclose serve:", "-watch"}},
		{name: "help webhooks", args: []string{"help", "webhooks"}, stdout: []string{"examples:", "safeclose webhooks list -config", "flags of safeclose webhooks list:", "-n int", "flags of safeclose webhooks replay:"}},
		{name: "help keys rotate", args: []string{"help", "keys", "rotate"}, stdout: []string{"examples:", "flags of safeclose keys rotate:", "-config"}},
		{name: "keys -h", args: []string{"keys", "-h"}, stdout: []string{"safeclose keys gen", "examples:"}},
		{name: "items orphans -h", args: []string{"items", "orphans", "-h"}, stdout: []string{"examples:", "-forget"}},
		{name: "webhook verify -help", args: []string{"webhook", "verify", "-help"}, stdout: []string{"examples:", "-jwk string"}},
		{name: "plugin run -h", args: []string{"plugin", "run", "-h"}, stdout: []string{"examples:", "-item-state string", "-memory-pages"}},
		{name: "sandbox -h", args: []string{"sandbox", "-h"}, stdout: []string{"examples:", "-time-scale"}},
		{name: "unknown subcommand", args: []string{"frobnicate"}, code: 2, noStdout: true, stderr: []string{`unknown subcommand "frobnicate"`, "subcommands:"}},
		{name: "help unknown", args: []string{"help", "frobnicate"}, code: 2, noStdout: true, stderr: []string{"frobnicate", "subcommands:"}},
		{name: "unknown leaf", args: []string{"webhooks", "purge"}, code: 2, noStdout: true, stderr: []string{`"purge"`, "usage: safeclose webhooks list"}},
		{name: "missing leaf", args: []string{"items"}, code: 2, noStdout: true, stderr: []string{"orphans", "usage: safeclose items orphans"}},
		{name: "bad flag", args: []string{"keys", "rotate", "-bogus"}, code: 2, noStdout: true, stderr: []string{"-bogus", "flags of safeclose keys rotate:"}},
		{name: "verify without files", args: []string{"webhook", "verify"}, code: 2, noStdout: true, stderr: []string{"-body, -header and -jwk are required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			code := mainCode(context.Background(), tt.args, &out, &errOut)
			if code != tt.code {
				t.Errorf("mainCode(%q) = %d, want %d; stderr %q", tt.args, code, tt.code, errOut.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout of %q lacks %q:\n%s", tt.args, s, out.String())
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(errOut.String(), s) {
					t.Errorf("stderr of %q lacks %q:\n%s", tt.args, s, errOut.String())
				}
			}
			if tt.noStdout && out.Len() != 0 {
				t.Errorf("stdout of %q = %q, want nothing", tt.args, out.String())
			}
		})
	}
}

// Issue 10.8: every subcommand has a one-line summary and examples, and
// every leaf flag set belongs to a listed subcommand.
func TestCommandsDocumented(t *testing.T) {
	known := map[string]bool{}
	for _, c := range commands() {
		known[c.name] = true
		if c.summary == "" || strings.Contains(c.summary, "\n") {
			t.Errorf("%s: summary %q is not one line", c.name, c.summary)
		}
		if !strings.Contains(c.usage, "examples:") {
			t.Errorf("%s: usage has no examples", c.name)
		}
	}
	for leaf, fs := range flagSets() {
		top, _, _ := strings.Cut(leaf, " ")
		if !known[top] {
			t.Errorf("flag set %q belongs to no listed subcommand", leaf)
		}
		if fs.Name() != leaf {
			t.Errorf("flagSets()[%q].Name() = %q", leaf, fs.Name())
		}
	}
}
