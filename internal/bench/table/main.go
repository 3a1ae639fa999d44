// Command table prints the issue 12 performance table from one run: the Go
// benchmark output (go test -bench, any -count) and, when given, the load
// harness summary (internal/bench/load.sh SUMMARY=…). Every row stands beside
// its baseline measured in the same run; values are medians over -count.
//
//	go run ./internal/bench/table -bench bench.txt [-load load.tsv] [-old old-bench.txt]
//
// -old adds a column with the same benchmarks run on the code before the
// change (same machine, same run), when the caller has such a file.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// results maps a benchmark name (without the -GOMAXPROCS suffix) and a unit
// to every value seen.
type results map[string]map[string][]float64

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func parseBench(r io.Reader) (results, string) {
	res := results{}
	cpu := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if c, ok := strings.CutPrefix(line, "cpu: "); ok {
			cpu = strings.TrimSpace(c)
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			if res[m[1]] == nil {
				res[m[1]] = map[string][]float64{}
			}
			res[m[1]][f[i+1]] = append(res[m[1]][f[i+1]], v)
		}
	}
	return res, cpu
}

// get returns the median of name's unit, or NaN-free ok=false.
func (r results) get(name, unit string) (float64, bool) {
	vs := slices.Clone(r[name][unit])
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2], true
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2, true
}

// find returns the first benchmark whose name matches re.
func (r results) find(re string) string {
	x := regexp.MustCompile(re)
	var names []string
	for n := range r {
		if x.MatchString(n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// cpuSuffix keys a load target's CPU-µs per request in parseLoad's map.
const cpuSuffix = "#cpu"

// withCPU is "N req/s", with the CPU per request when load.sh measured it.
func withCPU(load map[string]float64, target string) string {
	s := fmt.Sprintf("%.0f req/s", load[target])
	if c, ok := load[target+cpuSuffix]; ok {
		s += fmt.Sprintf(", %.1f CPU-µs/req", c)
	}
	return s
}

// pairPrefix keys load.sh's paired ratios ("pair:num/den": the median of
// the per-round ratios) in parseLoad's map.
const pairPrefix = "pair:"

// loadRatio is the ratio of the medians, with the median of the per-round
// ratios beside it when load.sh computed one.
func loadRatio(load map[string]float64, num, den string) string {
	s := fmt.Sprintf("%.2f×", load[num]/load[den])
	if p, ok := load[pairPrefix+num+"/"+den]; ok {
		s += fmt.Sprintf(" (per round %.2f×)", p)
	}
	return s
}

func parseLoad(path string) map[string]float64 {
	out := map[string]float64{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 2 {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
		if len(f) >= 4 { // the serving processes' CPU per request (load.sh)
			if v, err := strconv.ParseFloat(f[3], 64); err == nil {
				out[f[0]+cpuSuffix] = v
			}
		}
	}
	return out
}

func main() {
	benchPath := flag.String("bench", "bench.txt", "go test -bench output")
	loadPath := flag.String("load", "", "load.sh SUMMARY file (optional)")
	oldPath := flag.String("old", "", "the same benchmarks on the code before the change (optional)")
	guest := flag.String("guest", `^BenchmarkEnforcement/trivial/fuel$`, "regexp naming the pooled trivial-guest call benchmark (deadline enforced)")
	floor := flag.String("floor", `^BenchmarkEnforcement/trivial/none$`, "regexp naming the same call without enforcement (its same-run baseline)")
	flag.Parse()
	f, err := os.Open(*benchPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		os.Exit(1)
	}
	r, cpu := parseBench(f)
	f.Close()
	old := results{}
	if *oldPath != "" {
		if f, err := os.Open(*oldPath); err == nil {
			old, _ = parseBench(f)
			f.Close()
		}
	}
	load := map[string]float64{}
	if *loadPath != "" {
		load = parseLoad(*loadPath)
	}
	host, _ := os.Hostname()
	fmt.Printf("Safeclose performance, %s, %s, %d cores (GOMAXPROCS %d), host %s. Medians of -count runs; ratios are within this run.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), cpu, runtime.NumCPU(), runtime.GOMAXPROCS(0), host)
	fmt.Println("| path | measured | same-run baseline | ratio | goal |" + oldHead(*oldPath))
	fmt.Println("|---|---|---|---|---|" + oldSep(*oldPath))
	t := &table{r: r, old: old, withOld: *oldPath != ""}

	lrow := func(path, num, den, goal string) {
		_, ok1 := load[num]
		d, ok2 := load[den]
		if !ok1 || !ok2 || d == 0 {
			t.row(path, "not in this run (load.sh needs ../shared/perf-anchors, wrk, nginx)", "", "", goal, "")
			return
		}
		t.row(path, withCPU(load, num), den+" "+withCPU(load, den), loadRatio(load, num, den), goal, "")
	}
	lrow("Wasm JWT plugin (jwtauth), decision cache off ÷ plain fasthttp RP", "safeclose-nocache", "rp-fasthttp", "≥ 0.85×")
	lrow("same ÷ nginx + auth_request", "safeclose-nocache", "nginx-auth_request", "≥ 2.5×")
	lrow("jwtauth-as (AssemblyScript guest), cache off ÷ plain fasthttp RP", "safeclose-nocache-as", "rp-fasthttp", "≥ 0.85×")
	lrow("same ÷ nginx + auth_request", "safeclose-nocache-as", "nginx-auth_request", "≥ 2.5×")
	lrow("jwtauth with cache_ttl: 30s ÷ plain fasthttp RP", "safeclose", "rp-fasthttp", "keep ≥ 0.95×")
	lrow("built-in api_keys, no plugin ÷ nginx plain", "safeclose-apikeys", "nginx-plain", "≥ 0.80×")
	lrow("built-in api_keys, no plugin ÷ plain fasthttp RP", "safeclose-apikeys", "rp-fasthttp", "—")

	// In-process proxy rows (BenchmarkProxy: 32 keep-alive connections over
	// loopback, client and servers in one process, so absolute req/s are
	// lower than wrk's; the ratios are the point).
	prow := func(path, target, goal string) {
		n, ok1 := r.get("BenchmarkProxy/"+target, "req/s")
		d, ok2 := r.get("BenchmarkProxy/rp-fasthttp", "req/s")
		if !ok1 || !ok2 || d == 0 {
			return
		}
		al, _ := r.get("BenchmarkProxy/"+target, "allocs/op")
		t.row(path, fmt.Sprintf("%.0f req/s, %.0f allocs/req", n, al), fmt.Sprintf("rp-fasthttp %.0f req/s", d), fmt.Sprintf("%.2f×", n/d), goal, t.oldVal("BenchmarkProxy/"+target, "req/s", 1, " req/s"))
	}
	prow("in process (BenchmarkProxy): built-in api_keys ÷ plain fasthttp RP", "safeclose-apikey", "≥ 0.95×, 0 allocs in Safeclose")
	prow("in process: api_keys with the access log on ÷ plain fasthttp RP", "safeclose-apikey-accesslog", "—")
	prow("in process: jwtauth, cache off ÷ plain fasthttp RP", "safeclose-wasm-jwt", "≥ 0.85×")
	prow("in process: jwtauth, cache_ttl 30s ÷ plain fasthttp RP", "safeclose-wasm-jwt-cached", "≥ 0.95×")

	if g := r.find(*guest); g != "" {
		ns, _ := r.get(g, "ns/op")
		al, _ := r.get(g, "allocs/op")
		cpu, _ := r.get(g, "cpu-ns/op")
		base, ratio := "", ""
		if f := r.find(*floor); f != "" {
			fns, _ := r.get(f, "ns/op")
			fcpu, _ := r.get(f, "cpu-ns/op")
			base, ratio = fmt.Sprintf("unenforced %.2f µs (%.2f CPU-µs)", fns/1000, fcpu/1000), fmt.Sprintf("%.2f×", ns/fns)
		}
		t.row("pooled trivial-guest call, deadline enforced ("+g+")", fmt.Sprintf("%.2f µs (%.2f CPU-µs), %.0f allocs", ns/1000, cpu/1000, al), base, ratio, "≤ 1.0 µs, 0 allocs", t.oldVal(g, "ns/op", 1000, " µs"))
	} else {
		t.row("pooled trivial-guest call, deadline enforced", "not in this run (hostabi benchmark)", "", "", "≤ 1.0 µs, 0 allocs", "")
	}
	// The same guests in AssemblyScript (plugins/sdk-as): no Go runtime in
	// the guest, so the host's own per-call floor; beside the Go guest of
	// the same run.
	asRow := func(path, as, gorow, goal string) {
		ns, ok := r.get(as, "ns/op")
		if !ok {
			return
		}
		al, _ := r.get(as, "allocs/op")
		cpu, _ := r.get(as, "cpu-ns/op")
		base, ratio := "", ""
		if gns, ok := r.get(gorow, "ns/op"); ok && gns > 0 {
			gcpu, _ := r.get(gorow, "cpu-ns/op")
			base, ratio = fmt.Sprintf("Go guest %.2f µs (%.2f CPU-µs)", gns/1000, gcpu/1000), fmt.Sprintf("%.2f×", ns/gns)
		}
		t.row(path+" ("+as+")", fmt.Sprintf("%.2f µs (%.2f CPU-µs), %.0f allocs", ns/1000, cpu/1000, al), base, ratio, goal, t.oldVal(as, "ns/op", 1000, " µs"))
	}
	asRow("pooled trivial-guest call, deadline enforced, AssemblyScript guest", "BenchmarkEnforcement/trivial-as/fuel", "BenchmarkEnforcement/trivial/fuel", "≤ 1.0 µs, 0 allocs")
	asRow("jwtauth call, deadline enforced, AssemblyScript port", "BenchmarkEnforcement/jwt-as/fuel", "BenchmarkEnforcement/jwt/fuel", "—")

	const in = "BenchmarkWebhookIntake"
	if w, ok := r.get(in, "webhooks/s"); ok {
		p99, _ := r.get(in, "p99-ms")
		cpuw, _ := r.get(in, "cpu-µs/webhook")
		base, bok := r.get("BenchmarkEnqueue", "writes/s")
		bs, ratio := "", ""
		if bok {
			bs, ratio = fmt.Sprintf("store Enqueue alone %.0f writes/s", base), fmt.Sprintf("%.2f×", w/base)
		}
		m := fmt.Sprintf("%.0f/s, p99 %.1f ms, %.0f CPU-µs each", w, p99, cpuw)
		if d, ok := r.get(in, "drained"); ok { // its worker paces itself during the burst (webhooks.intake_first_at)
			m += fmt.Sprintf("; its worker finished %.0f meanwhile", d)
		}
		t.row("verified + synced webhooks, 32 senders (BenchmarkWebhookIntake)", m, bs, ratio, "≥ 10k/s, p99 ≤ 20 ms", t.oldVal(in, "webhooks/s", 1, "/s")+t.oldVal(in, "cpu-µs/webhook", 1, " CPU-µs"))
	}
	const alone = in + "NoWorker"
	if w, ok := r.get(alone, "webhooks/s"); ok {
		p99, _ := r.get(alone, "p99-ms")
		cpuw, _ := r.get(alone, "cpu-µs/webhook")
		bs, ratio := "", ""
		if base, ok := r.get(in, "webhooks/s"); ok {
			bs, ratio = fmt.Sprintf("with its worker draining meanwhile %.0f/s", base), fmt.Sprintf("%.2f×", w/base)
		}
		t.row("the same intake, no worker draining meanwhile (BenchmarkWebhookIntakeNoWorker)", fmt.Sprintf("%.0f/s, p99 %.1f ms, %.0f CPU-µs each", w, p99, cpuw), bs, ratio, "report", "")
	}
	// The worker's own CPU for what it drains beside the intake above: an
	// entry naming an item nobody holds, on an in-memory store.
	const wk = "BenchmarkWorkerUnknownItem"
	if cpu, ok := r.get(wk, "cpu-µs/entry"); ok {
		ns, _ := r.get(wk, "ns/op")
		al, _ := r.get(wk, "allocs/op")
		t.row("one worker's CPU per unknown-item entry, in-memory store (BenchmarkWorkerUnknownItem)", fmt.Sprintf("%.1f µs, %.1f CPU-µs with Badger's writer, %.0f allocs", ns/1000, cpu, al), "", "", "report", t.oldVal(wk, "cpu-µs/entry", 1, " CPU-µs"))
	}
	// Issue 11: PostgreSQL beside Badger, same run (the PG benchmarks run
	// only under scripts/with-postgres.sh).
	if pw, ok := r.get("BenchmarkWebhookIntakePostgres", "webhooks/s"); ok {
		p99, _ := r.get("BenchmarkWebhookIntakePostgres", "p99-ms")
		bs, ratio := "", ""
		if w, ok := r.get(in, "webhooks/s"); ok {
			bs, ratio = fmt.Sprintf("Badger %.0f/s", w), fmt.Sprintf("%.2f×", pw/w)
		}
		t.row("the same intake on PostgreSQL (BenchmarkWebhookIntakePostgres)", fmt.Sprintf("%.0f/s, p99 %.1f ms", pw, p99), bs, ratio, "≥ 0.8× Badger", "")
	}
	if pw, ok := r.get("BenchmarkPGEnqueue", "writes/s"); ok {
		bs, ratio := "", ""
		if w, ok := r.get("BenchmarkEnqueue", "writes/s"); ok {
			bs, ratio = fmt.Sprintf("Badger %.0f writes/s", w), fmt.Sprintf("%.2f×", pw/w)
		}
		t.row("queue writes alone on PostgreSQL, 32 senders (BenchmarkPGEnqueue)", fmt.Sprintf("%.0f writes/s", pw), bs, ratio, "—", "")
	}
	if pp, ok := r.get("BenchmarkPGSaveItem", "p99-us"); ok {
		bs := ""
		if bp, ok := r.get("BenchmarkSaveItem", "p99-us"); ok {
			bs = fmt.Sprintf("Badger %.2f ms", bp/1000)
		}
		t.row("exchange save p99 on PostgreSQL (BenchmarkPGSaveItem)", fmt.Sprintf("%.2f ms", pp/1000), bs, "", "report", "")
	}
	const e2e = "BenchmarkWebhookEndToEnd"
	if w, ok := r.get(e2e, "webhooks/s"); ok {
		p99, _ := r.get(e2e, "p99-ms")
		cpuw, _ := r.get(e2e, "cpu-µs/webhook")
		t.row("the same end to end over HTTP, default 8 workers (BenchmarkWebhookEndToEnd)", fmt.Sprintf("%.0f/s, p99 %.1f ms, %.0f CPU-µs each (forwarding included)", w, p99, cpuw), "", "", "≥ 10k/s, p99 ≤ 20 ms", t.oldVal(e2e, "webhooks/s", 1, "/s"))
		fw, _ := r.get(e2e, "forwards/s")
		first, _ := r.get(e2e, "fwd-first10%/s")
		last, _ := r.get(e2e, "fwd-last10%/s")
		drain, _ := r.get(e2e, "drain-s")
		conns, _ := r.get(e2e, "conns")
		during, _ := r.get(e2e, "fwd-during-intake-%")
		t.row("forwarding, intake running meanwhile (BenchmarkWebhookEndToEnd)", fmt.Sprintf("%.0f/s from the first webhook to the last forward; first tenth %.0f/s, last tenth %.0f/s; %.0f%% forwarded during intake; drained in %.1f s; %.0f connections", fw, first, last, during, drain, conns),
			fmt.Sprintf("intake %.0f/s", w), fmt.Sprintf("%.2f× intake", fw/w), "report", t.oldVal(e2e, "forwards/s", 1, "/s"))
	}
	const dr = "BenchmarkWebhookDrain"
	if fw, ok := r.get(dr, "forwards/s"); ok {
		in, _ := r.get(dr, "webhooks/s")
		first, _ := r.get(dr, "fwd-first10%/s")
		last, _ := r.get(dr, "fwd-last10%/s")
		cpuf, _ := r.get(dr, "cpu-µs/forward")
		t.row("forwarding while a 20k backlog drains, default workers (BenchmarkWebhookDrain)", fmt.Sprintf("%.0f/s; first tenth %.0f/s, last tenth %.0f/s; %.0f CPU-µs each", fw, first, last, cpuf),
			fmt.Sprintf("the intake that queued it %.0f/s", in), fmt.Sprintf("%.2f× intake; last/first %.2f", fw/in, last/first), "≥ intake rate, flat", t.oldVal(dr, "forwards/s", 1, "/s"))
	}
	if v, ok := r.get("BenchmarkVerify", "ns/op"); ok {
		al, _ := r.get("BenchmarkVerify", "allocs/op")
		bv, _ := r.get("BenchmarkP256VerifyBaseline", "ns/op")
		t.row("BenchmarkVerify (one webhook)", fmt.Sprintf("%.0f µs, %.0f allocs", v/1000, al), fmt.Sprintf("P-256 verify alone %.0f µs", bv/1000), fmt.Sprintf("%.2f×", v/bv), "≤ 80 µs (P-256 alone ≈ 65 µs)", t.oldVal("BenchmarkVerify", "ns/op", 1000, " µs")+t.oldVal("BenchmarkVerify", "allocs/op", 1, " allocs"))
	}
	for _, name := range []string{"jwtauth", "apikey", "pathrule", "webhookfilter", "jwtauth-as", "apikey-as", "pathrule-as", "webhookfilter-as"} {
		heap, ok := r.get("BenchmarkInstanceMemory/"+name, "heap-B/instance")
		if !ok {
			continue
		}
		lin, _ := r.get("BenchmarkInstanceMemory/"+name, "linear-B/instance")
		t.row("memory per warm instance: "+name+" (BenchmarkInstanceMemory)", fmt.Sprintf("%.1f MiB held (%.1f MiB linear memory)", heap/(1<<20), lin/(1<<20)), "", "", "≤ 4 MiB", "")
	}
	if rss, ok := r.get("BenchmarkTenantsRSS", "rss-MiB"); ok {
		tm, _ := r.get("BenchmarkTenantsRSS", "tenants-MiB")
		t.row("process RSS, 10 tenants × pool 4, jwtauth (BenchmarkTenantsRSS)", fmt.Sprintf("%.0f MiB", rss), fmt.Sprintf("before the tenants: %.0f MiB", rss-tm), "", "report", "")
	}
	if v, ok := r.get("BenchmarkLeaseBacklog", "ns/op"); ok {
		al, _ := r.get("BenchmarkLeaseBacklog", "allocs/op")
		t.row("lease one entry of a 20k backlog on disk, read ahead (BenchmarkLeaseBacklog)", fmt.Sprintf("%.1f µs, %.0f allocs", v/1000, al), "", "", "report", t.oldVal("BenchmarkLeaseBacklog", "ns/op", 1000, " µs"))
	}
	for _, bn := range []string{"BenchmarkLeaseNext", "BenchmarkPGLeaseNext"} {
		small, ok1 := r.get(bn+"/queued=10", "ns/op")
		if !ok1 {
			continue
		}
		for _, n := range []string{"100000", "1000000"} {
			big, ok := r.get(bn+"/queued="+n, "ns/op")
			if !ok {
				continue
			}
			t.row("lease one entry with "+n+" queued ("+bn+")", fmt.Sprintf("%.1f µs", big/1000), fmt.Sprintf("10 queued: %.1f µs", small/1000), fmt.Sprintf("%.2f×", big/small), "same as with 10", t.oldVal(bn+"/queued="+n, "ns/op", 1000, " µs"))
		}
	}
}

type table struct {
	r, old  results
	withOld bool
}

func (t *table) row(path, got, base, ratio, goal, old string) {
	line := fmt.Sprintf("| %s | %s | %s | %s | %s |", path, got, base, ratio, goal)
	if t.withOld {
		line += " " + old + " |"
	}
	fmt.Println(line)
}

// oldVal formats the old code's median of name/unit, divided by div.
func (t *table) oldVal(name, unit string, div float64, suffix string) string {
	v, ok := t.old.get(name, unit)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%.0f%s ", v/div, suffix)
}

func oldHead(p string) string {
	if p == "" {
		return ""
	}
	return " before (same run) |"
}

func oldSep(p string) string {
	if p == "" {
		return ""
	}
	return "---|"
}
