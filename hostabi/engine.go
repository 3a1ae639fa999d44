package hostabi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/safeclose/safeclose/hostabi/abi"
	"github.com/safeclose/safeclose/hostabi/internal/datamerge"
	"github.com/safeclose/safeclose/hostabi/internal/wasmcheck"
	"github.com/safeclose/safeclose/internal/loglimit"
)

// Options configure an Engine.
type Options struct {
	// CacheDir holds wazero's compilation cache so a restart does not
	// recompile. Zero means an in-memory cache. It is created 0700 if
	// missing; NewEngine refuses (ErrCacheDir) one that a user other than
	// this process's could write, directly or through a parent directory.
	CacheDir string
	// Logger receives plugin logs and failures. Zero means slog.Default().
	Logger *slog.Logger
	// Now is the clock given to plugins (now) and used for JWT checks. Zero
	// means time.Now.
	Now func() time.Time
	// Enforcement is how a call's deadline stops a running guest. Zero
	// means EnforceFuel.
	Enforcement Enforcement
	// KV holds the plugins' key/value data (the "kv" capability): the
	// configured store, so it is durable and, on PostgreSQL, shared by
	// every replica. Nil means a MemoryKV private to this Engine.
	KV KVStore
}

// Engine loads plugins. It is safe for concurrent use.
type Engine struct {
	cache wazero.CompilationCache
	log   *slog.Logger
	now   func() time.Time

	kv     KVStore
	kvLogs loglimit.Limiter // "kv store unavailable" lines

	enforce    Enforcement
	fuelOnce   sync.Once
	fuelPerSec float64 // fuel units per second, calibrated at first use
	fuelErr    error
}

// NewEngine returns an Engine; Close releases its compilation cache.
func NewEngine(ctx context.Context, o Options) (*Engine, error) {
	e := &Engine{log: o.Logger, now: o.Now, kv: o.KV, enforce: o.Enforcement}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.kv == nil {
		e.kv = NewMemoryKV(e.now)
	}
	if o.CacheDir != "" {
		c, err := openFileCache(ctx, o.CacheDir)
		if err != nil {
			return nil, err
		}
		e.cache = c
	} else {
		e.cache = wazero.NewCompilationCache()
	}
	return e, nil
}

// Close releases the compilation cache. Plugins must be closed first.
func (e *Engine) Close(ctx context.Context) error { return e.cache.Close(ctx) }

// JWTOptions configure jwt_verify for a plugin.
type JWTOptions struct {
	// JWKS is a JSON Web Key Set ({"keys":[...]}) of EC P-256 (ES256) or
	// RSA (RS256) public keys. HMAC keys (HS256) are the plugin's Secrets,
	// chosen by the token's kid or, without kid, the only secret.
	JWKS []byte
	// Issuer and Audience, when set, must match iss and aud.
	Issuer, Audience string
	// Leeway is allowed clock skew for exp and nbf. Zero means
	// DefaultJWTLeeway (30s).
	Leeway time.Duration
	// HMACSecrets names the Secrets that verify HS256 tokens; an empty,
	// non-nil list names none. Nil means the only secret does: with the
	// crypto capability and several secrets, Load refuses a nil list,
	// because a token's kid picks among every allowed secret and whoever
	// holds any of them (a key shared with a partner for
	// hmac_sha256_verify) could mint sessions. A name not in Secrets is
	// refused.
	HMACSecrets []string
}

// PluginOptions describe one plugin to load.
type PluginOptions struct {
	Tenant, Name string
	Kind         Kind
	Wasm         []byte
	// SHA256 pins the module (hex). Empty skips the check.
	SHA256 string
	// Config is the plugin's config as JSON, returned by get_config.
	Config  []byte
	Caps    Capabilities
	Secrets map[string][]byte
	JWT     JWTOptions
	// MemoryLimitPages caps each instance's memory in 64 KiB pages (a Go
	// guest's heap and goroutine stacks). Zero means DefaultMemoryPages
	// (512 = 32 MiB); above MaxMemoryPages (1024 = 64 MiB) Load fails with
	// ErrLimits.
	MemoryLimitPages uint32
	// Timeout is the deadline of one call. Zero means DefaultTimeout
	// (100ms). A call that returns after its deadline fails with ErrTimeout
	// even if the guest returned a value.
	Timeout time.Duration
	// PoolSize is the number of instances kept warm. Zero means
	// min(GOMAXPROCS, MaxPoolSize); negative or above MaxPoolSize (16) Load
	// fails with ErrLimits.
	PoolSize int
	// PenaltyAfter is how many consecutive guest failures (trap, timeout,
	// invalid result) put the plugin in its penalty box: calls then fail
	// fast with ErrPenalty for PenaltyBackoff, then one probe call runs; its
	// failure doubles the window up to PenaltyMaxBackoff, its success closes
	// the box. Zeros mean 5, 1s and 30s.
	PenaltyAfter                      int
	PenaltyBackoff, PenaltyMaxBackoff time.Duration
	// BodyLimit is how many body bytes get_body returns (Caps.Body). Zero
	// means none.
	BodyLimit int
	// CacheTTL, when set, lets the host reuse an allow decision for up to
	// this long for requests that present the same values for every input
	// the plugin read (and never past a verified JWT's exp). Only for
	// plugins whose answer depends on nothing else. Zero means off.
	CacheTTL time.Duration
	// CPUShare bounds the guest computation of the plugin's calls, on
	// average, in cores (0.5: half of one core): over it, and a second's
	// worth of it ahead, calls fail fast with ErrOverShare. Zero means
	// DefaultCPUShare() (half the cores, at least one); a caller loading
	// several plugins gives them DefaultCPUShareAmong. Measured in fuel,
	// so only under EnforceFuel. See share.go.
	CPUShare float64
}

// Load compiles, checks and pre-warms a plugin. A module that fails to
// compile, lacks its export, imports something it may not, or cannot start
// is refused with an error wrapping ErrRefused; limits out of range also
// wrap ErrLimits.
func (e *Engine) Load(ctx context.Context, o PluginOptions) (*Plugin, error) {
	if o.Tenant == "" || o.Name == "" {
		return nil, fmt.Errorf("%w: tenant and name are required", ErrRefused)
	}
	sum := sha256.Sum256(o.Wasm)
	if o.SHA256 != "" && !strings.EqualFold(o.SHA256, hex.EncodeToString(sum[:])) {
		return nil, fmt.Errorf("%w: %s/%s: sha256 is %x, config pins %s", ErrRefused, o.Tenant, o.Name, sum, o.SHA256)
	}
	if err := o.limits(); err != nil {
		return nil, fmt.Errorf("%w: %s/%s: %w", ErrRefused, o.Tenant, o.Name, err)
	}
	// Before wazero sees the bytes: its decoder allocates by declared
	// counts, and an absurd one ends the process (Issue 10.9).
	if err := wasmcheck.Check(o.Wasm); err != nil {
		return nil, fmt.Errorf("%w: %s/%s: %w", ErrRefused, o.Tenant, o.Name, err)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	rt := wazero.NewRuntimeWithConfig(ctx, e.runtimeConfig().
		WithCompilationCache(e.cache).
		WithMemoryLimitPages(o.MemoryLimitPages).
		WithCoreFeatures(api.CoreFeaturesV2))
	p := &Plugin{
		opts: o, e: e, rt: rt, log: e.log.With("tenant", o.Tenant, "plugin", o.Name),
		epoch: time.Now(), logs: loglimit.Limiter{Rate: 20, Burst: 50},
		box: newPenaltyBox(o.PenaltyAfter, o.PenaltyBackoff, o.PenaltyMaxBackoff, time.Now),
	}
	fail := func(err error) (*Plugin, error) {
		_ = rt.Close(ctx)
		p.closeCompiled()
		return nil, fmt.Errorf("%w: %s/%s: %w", ErrRefused, o.Tenant, o.Name, err)
	}
	t0 := time.Now()
	// Issue 12: Go's ~36,000 data segments as one, so an instance does not
	// keep a slice header for each (RATIONALE.md "Why data segments are
	// merged at load").
	merged, _, _ := datamerge.Merge(o.Wasm, datamerge.MaxGap)
	bin, err := e.prepare(ctx, rt, p, merged)
	if err != nil {
		return fail(err)
	}
	// The plugin keeps its compiled module, not the bytes (a Go guest's
	// are ~3.3 MB).
	p.opts.Wasm = nil
	cm, err := rt.CompileModule(ctx, bin)
	if err != nil {
		return fail(fmt.Errorf("compile: %w", err))
	}
	p.compiled = cm
	p.compileTime = time.Since(t0)
	info, err := Inspect(cm)
	if err != nil {
		return fail(err)
	}
	if err := info.check(o.Kind, o.Caps); err != nil {
		return fail(err)
	}
	p.initialize = info.Initialize
	if o.Caps.Crypto {
		if p.jwt, err = newJWTVerifier(o.JWT, o.Secrets, e.now); err != nil {
			return fail(err)
		}
	}
	if o.Caps.KV {
		p.kv = e.kv
	}
	if o.CacheTTL > 0 && o.Kind == KindAuth {
		p.cache = newDecisionCache(o.CacheTTL, e.now)
	}
	if err := p.instantiateHost(ctx); err != nil {
		return fail(err)
	}
	if err := p.start(ctx); err != nil {
		return fail(err)
	}
	return p, nil
}

// ModuleInfo describes a compiled module: what `safeclose plugin check`
// prints and what Load checks.
type ModuleInfo struct {
	Exports    []string
	Imports    []string // "module.name"
	Initialize bool     // has _initialize (a Go c-shared reactor)
	HasStart   bool     // has _start (a command module: refused)
	Memory     bool
	MinPages   uint32
	MaxPages   uint32 // 0 when the module sets no maximum
	ABI        string // abi.ModuleName when any host function is imported
	importDefs []api.FunctionDefinition
	exportDefs map[string]api.FunctionDefinition
}

// Inspect lists a compiled module's imports and exports.
func Inspect(cm wazero.CompiledModule) (ModuleInfo, error) {
	var mi ModuleInfo
	mi.exportDefs = cm.ExportedFunctions()
	for n := range mi.exportDefs {
		mi.Exports = append(mi.Exports, n)
	}
	_, mi.Initialize = mi.exportDefs[abi.ExportInitialize]
	_, mi.HasStart = mi.exportDefs["_start"]
	if m, ok := cm.ExportedMemories()[abi.ExportMemory]; ok {
		mi.Memory = true
		mi.MinPages = m.Min()
		if mx, ok := m.Max(); ok {
			mi.MaxPages = mx
		}
	}
	for _, d := range cm.ImportedFunctions() {
		mod, name, _ := d.Import()
		mi.Imports = append(mi.Imports, mod+"."+name)
		if mod == abi.ModuleName {
			mi.ABI = abi.ModuleName
		}
		mi.importDefs = append(mi.importDefs, d)
	}
	return mi, nil
}

// CheckExports reports whether the module fits kind: the export with the
// right signature, a memory, a reactor rather than a command. It does not
// check capabilities.
func (mi ModuleInfo) CheckExports(kind Kind) error {
	name := kind.export()
	d, ok := mi.exportDefs[name]
	if !ok {
		return fmt.Errorf("missing export %q (a %s plugin must export it with //go:wasmexport %s)", name, kind, name)
	}
	want := api.ValueTypeI64
	if kind == KindEvent {
		want = api.ValueTypeI32
	}
	if len(d.ParamTypes()) != 0 || len(d.ResultTypes()) != 1 || d.ResultTypes()[0] != want {
		return fmt.Errorf("export %q has signature %v -> %v, want () -> %s", name, d.ParamTypes(), d.ResultTypes(), api.ValueTypeName(want))
	}
	if !mi.Memory {
		return errors.New(`missing export "memory"`)
	}
	if mi.HasStart && !mi.Initialize {
		return errors.New("module is a command (_start); build it as a reactor: go build -buildmode=c-shared")
	}
	return nil
}

func (mi ModuleInfo) check(kind Kind, caps Capabilities) error {
	if err := mi.CheckExports(kind); err != nil {
		return err
	}
	var errs []error
	for _, d := range mi.importDefs {
		mod, name, _ := d.Import()
		switch mod {
		case "wasi_snapshot_preview1":
			continue
		case abi.ModuleName:
			hf, ok := hostFuncs[name]
			if !ok {
				errs = append(errs, fmt.Errorf("imports unknown host function %s.%s", mod, name))
				continue
			}
			if !sameTypes(hf.params, d.ParamTypes()) || !sameTypes(hf.results, d.ResultTypes()) {
				errs = append(errs, fmt.Errorf("imports %s.%s with signature %v -> %v, the host has %v -> %v",
					mod, name, d.ParamTypes(), d.ResultTypes(), hf.params, hf.results))
				continue
			}
			if hf.kind >= 0 && Kind(hf.kind) != kind {
				errs = append(errs, fmt.Errorf("imports %s.%s, which %s plugins cannot use", mod, name, kind))
			}
			if hf.cap != "" && !caps.has(hf.cap) {
				errs = append(errs, fmt.Errorf("imports %s.%s but the %q capability is not granted", mod, name, hf.cap))
			}
		default:
			errs = append(errs, fmt.Errorf("imports from unknown module %q (only %s and wasi_snapshot_preview1 exist)", mod, abi.ModuleName))
		}
	}
	return errors.Join(errs...)
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// InspectWasm compiles a module on its own (no limits, no instance) and
// lists its imports and exports, for `safeclose plugin check`.
func InspectWasm(ctx context.Context, wasm []byte) (ModuleInfo, time.Duration, error) {
	return InspectWasmCached(ctx, wasm, "")
}

// InspectWasmCached is InspectWasm with wazero's compilation cache in
// cacheDir ("" for none), as Options.CacheDir: a second inspection of the
// same module reads its compiled code instead of compiling it again.
func InspectWasmCached(ctx context.Context, wasm []byte, cacheDir string) (ModuleInfo, time.Duration, error) {
	cfg := wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(true)
	if cacheDir != "" {
		c, err := openFileCache(ctx, cacheDir)
		if err != nil {
			return ModuleInfo{}, 0, err
		}
		defer c.Close(ctx)
		cfg = cfg.WithCompilationCache(c)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	defer rt.Close(ctx)
	if err := wasmcheck.Check(wasm); err != nil { // see Load (Issue 10.9)
		return ModuleInfo{}, 0, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	t0 := time.Now()
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return ModuleInfo{}, 0, fmt.Errorf("%w: compile: %w", ErrRefused, err)
	}
	d := time.Since(t0)
	mi, err := Inspect(cm)
	return mi, d, err
}
