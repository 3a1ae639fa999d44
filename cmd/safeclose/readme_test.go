package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/safeclose/safeclose/proxy"
	"github.com/safeclose/safeclose/store"
)

// notMetrics are safeclose_* names in the docs that are not metrics.
var notMetrics = map[string]bool{
	"safeclose_v1": true, // the host module's name (hostabi/ABI.md)
}

var (
	metricName = regexp.MustCompile(`\bsafeclose_[a-z0-9_]+`)
	cmdMention = regexp.MustCompile(`(?:^|[\s/])safeclose\s+(.*)$`)
	codeSpan   = regexp.MustCompile("`([^`]+)`")
	flagBefore = regexp.MustCompile(`(?:^|\s)-[^\s]+\s+$`)
)

// mention finds `safeclose ARGS` in s as a command, not as the value of
// another program's flag (`initdb -U safeclose --auth=trust`).
func mention(s string) ([]string, bool) {
	for _, ix := range cmdMention.FindAllStringSubmatchIndex(s, -1) {
		if !flagBefore.MatchString(s[:ix[0]+1]) {
			return []string{s[ix[0]:ix[1]], s[ix[2]:ix[3]]}, true
		}
	}
	return nil, false
}

// readmeDrift lists what md shows that the program does not have: metric
// names for which known is false, and flags of `safeclose CMD [LEAF] -flag`
// that CMD's flag set lacks. Flags are read from code blocks (lines that run
// safeclose; other programs' lines are skipped) and from inline code in a
// paragraph, list item or table row that names a safeclose subcommand in
// inline code before them.
func readmeDrift(md string, known func(string) bool, sets map[string]*flag.FlagSet) []string {
	var bad []string
	for _, m := range metricName.FindAllString(md, -1) {
		if !notMetrics[m] && !known(m) {
			bad = append(bad, "metric "+m+" is not registered")
		}
	}
	// resolve turns the words after "safeclose" into a flag set and the
	// words after the (sub)command.
	resolve := func(rest string) (string, []string, bool) {
		w := strings.Fields(rest)
		if len(w) == 0 || strings.HasPrefix(w[0], "-") {
			return "serve", w, true
		}
		if w[0] == "help" || strings.ToUpper(w[0]) == w[0] {
			return "", nil, false // help, or a placeholder such as CMD
		}
		if _, ok := sets[w[0]]; ok {
			return w[0], w[1:], true
		}
		if len(w) > 1 { // a leaf, or leaves as in "plugin check|run"
			alts := strings.Split(w[1], "|")
			ok := true
			for _, a := range alts {
				_, found := sets[w[0]+" "+a]
				ok = ok && found
			}
			if ok {
				return w[0] + " " + alts[0], w[2:], true
			}
		}
		bad = append(bad, fmt.Sprintf("`safeclose %s`: no such subcommand", rest))
		return "", nil, false
	}
	check := func(leaf string, words []string) {
		for _, w := range words {
			w = strings.TrimRight(strings.TrimLeft(w, "[("), "]),;:.")
			name, _, _ := strings.Cut(strings.TrimLeft(w, "-"), "=")
			if !strings.HasPrefix(w, "-") || strings.HasPrefix(w, "---") || name == "" || !unicode.IsLetter(rune(name[0])) {
				continue // not a flag: a value, a rule, a negative number
			}
			if sets[leaf].Lookup(name) == nil {
				bad = append(bad, fmt.Sprintf("`safeclose %s` has no flag %s", leaf, w))
			}
		}
	}
	// prose checks the inline code of one paragraph, list item or table row.
	prose := func(block string) {
		leaf := "" // the subcommand named earlier in the block
		for _, span := range codeSpan.FindAllStringSubmatch(block, -1) {
			s := strings.Join(strings.Fields(span[1]), " ")
			if m, ok := mention(s); ok {
				l, words, ok := resolve(m[1])
				if leaf = l; ok {
					check(l, words)
				}
			} else if leaf != "" && strings.HasPrefix(s, "-") {
				check(leaf, strings.Fields(s)[:1])
			}
		}
	}
	inFence, cont, block := false, "", ""
	for _, line := range strings.Split(md, "\n") {
		trim := strings.TrimSpace(line)
		if strings.HasPrefix(trim, "```") {
			prose(block)
			inFence, block = !inFence, ""
			continue
		}
		if inFence {
			if l, ok := strings.CutSuffix(line, `\`); ok {
				cont += l + " "
				continue
			}
			line, cont = cont+line, ""
			if i := strings.Index(line, " #"); i >= 0 {
				line = line[:i] // a shell comment
			}
			if m, ok := mention(line); ok {
				if l, words, ok := resolve(m[1]); ok {
					check(l, words)
				}
			}
			continue
		}
		if trim == "" || strings.HasPrefix(trim, "- ") || strings.HasPrefix(trim, "|") || strings.HasPrefix(trim, "#") {
			prose(block) // a new paragraph, list item, table row or heading
			block = ""
		}
		block += line + "\n"
	}
	prose(block)
	return bad
}

// registeredMetrics builds a proxy with minimal options and reports whether
// a metric name is registered in its registry: registering another
// collector under a registered name fails.
func registeredMetrics(t *testing.T) func(string) bool {
	t.Helper()
	db, err := store.Open(store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg := prometheus.NewRegistry()
	_, err = proxy.New(proxy.Options{Store: db, Registry: reg, Tenants: []proxy.Tenant{{
		Name: "t", Hosts: []string{"t.example"}, Unavailable: &proxy.Unavailability{Reason: "config_invalid", Field: "tenants[0]"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	registerServeMetrics(reg, &proxy.Certs{}, &lockedWriter{w: io.Discard})
	return func(name string) bool {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} { // histogram series
			if base, ok := strings.CutSuffix(name, suffix); ok && reg.Register(prometheus.NewGauge(prometheus.GaugeOpts{Name: base, Help: "probe"})) != nil {
				return true
			}
		}
		return reg.Register(prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "probe"})) != nil
	}
}

// Issue 10.2: every metric name and every safeclose flag the README shows
// exists, so docs that drift from the code fail the build.
func TestREADMEMatchesCode(t *testing.T) {
	known := registeredMetrics(t)
	for _, doc := range []string{"../../README.md", "../../hostabi/ABI.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range readmeDrift(string(b), known, flagSets()) {
			t.Errorf("%s: %s", doc, p)
		}
	}
}

// Issue 10.2: the README check can fail: wrong names are reported, other
// programs' flags are not.
func TestREADMEDriftDetected(t *testing.T) {
	known := registeredMetrics(t)
	tests := []struct {
		name, md string
		want     []string // substrings of the problems, in order; none: no problems
	}{
		{"unknown metric", "failures go to `safeclose_plugin_failures_total`.", []string{"safeclose_plugin_failures_total"}},
		{"known metric and histogram series", "`safeclose_auth_failures_total{reason=\"penalty\"}` and `safeclose_webhook_intake_seconds_bucket`; module `safeclose_v1`", nil},
		{"flag in code block", "```sh\nsafeclose webhooks list -config FILE -limit 5   # -bogus in a comment\n```", []string{"webhooks list` has no flag -limit"}},
		{"continued line", "```sh\nsafeclose plugin run a.wasm -cap config \\\n  --request 'GET /' -X POST\n```", []string{"plugin run` has no flag -X"}},
		{"flag in prose", "Run `safeclose serve -config FILE`; without `-config` it uses, with `-reload`,\nthe dev config.", []string{"serve` has no flag -reload"}},
		{"unknown subcommand", "```\nsafeclose items purge -config x\n```", []string{"items purge"}},
		{"other programs", "```sh\ncurl -s -X POST x -H 'A: b' -d '{}'\n./bin/webapp -listen :1 -dist d -link-script u\n```\nThe flag `-link-script URL` of the app.", nil},
		{"span across lines", "Run `safeclose keys\nrotate -confg F`.", []string{"keys rotate` has no flag -confg"}},
		{"optional flag", "`safeclose items orphans [-confg FILE]`", []string{"items orphans` has no flag -confg"}},
		{"placeholder", "`safeclose CMD -h` prints help.", nil},
		{"another program's flag value", "```sh\ninitdb -D /tmp/x -U safeclose --auth=trust\n```", nil},
		{"new paragraph resets", "`safeclose serve -config F`.\n\nThe app's `-listen` flag.", nil},
		{"all good", "```sh\nsafeclose webhook verify --body b --header h --jwk k --at 1\nsafeclose keys gen\n```\n`go run ./cmd/safeclose sandbox` (flags `-addr`, `-seed N`)", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readmeDrift(tt.md, known, flagSets())
			if len(got) != len(tt.want) {
				t.Fatalf("readmeDrift(%q) = %q, want %d problems %q", tt.md, got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("readmeDrift(%q)[%d] = %q, want it to name %q", tt.md, i, got[i], w)
				}
			}
		})
	}
}
