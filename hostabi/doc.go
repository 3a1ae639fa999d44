// Package hostabi runs tenants' untrusted WebAssembly plugins with wazero
// and implements the host side of the safeclose_v1 ABI (ABI.md; its names
// and encodings are in the abi subpackage).
//
// Invariants:
//   - A module is compiled once per (tenant, sha256) into an on-disk
//     compilation cache; each Plugin owns its own wazero runtime, so its
//     memory cap and its instances are never shared with another tenant.
//   - Every plugin has a bounded, pre-warmed pool of instances. One instance
//     serves one call at a time.
//   - Any trap, timeout, out-of-range guest pointer or host error discards
//     the instance and returns an error; the caller fails closed. The pool
//     refills in the background.
//   - A running call is stopped by fuel checks the host compiles into the
//     guest at load (internal/fuel; RATIONALE.md "Why fuel instead of
//     CloseOnContextDone"): the watchdog raises the limit of a call past its
//     deadline, and each call's fuel budget is a backstop.
//   - Guests get real clocks and crypto randomness, no files, no
//     environment, no arguments and no network.
//   - Host functions check capabilities at load: a module importing a host
//     function its plugin was not granted is refused.
//
// The package imports the standard library, wazero and the stdlib-only
// internal/loglimit and internal/jwkp256; it knows nothing of HTTP servers (a Request is an
// interface the proxy implements).
package hostabi
