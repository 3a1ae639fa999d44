// Package configs owns Safeclose's configuration file: its schema, strict
// decoding (unknown keys are errors), defaults from one prototype, a pure
// Validate that reports every problem by field path, and the example files
// (safeclose.yaml, the working dev default embedded in the binary, and
// production.example.yaml).
//
// Invariants: Validate does no I/O; secrets are never inline but named by
// reference (env:NAME or file:PATH) and resolved by Resolve into Secret values
// that print as REDACTED.
//
// This package imports nothing from the module. It is not a stable API
// (RATIONALE.md, "Why the runtime packages are not under internal/").
package configs
