// Package fuel rewrites a WebAssembly module so that it meters itself: a
// mutable i64 global (the fuel) is decremented at the entry of every
// function that calls another function and at every loop header, and the
// module traps with `unreachable` as soon as the fuel falls below a second
// global (the limit). The host refills the fuel before each call and stops a
// running call from another goroutine by raising the limit, so a guest that
// never returns is stopped without wazero's per-call context watcher. See
// RATIONALE.md "Why fuel instead of CloseOnContextDone".
//
// Invariants:
//   - The rewrite adds two globals after every existing one (imported or
//     defined) and two exports; it adds no function, type, local or
//     import, so every existing index in the module is unchanged.
//   - Each check costs 1 (fuel counts loop iterations and calls) or, with
//     Options.CountInstructions, the static number of instructions it pays
//     for: a loop header pays for the loop's body outside nested loops, a
//     function entry for the function's instructions outside any loop.
//     Function entries are checked only in functions that call another:
//     one that calls nothing runs its loops' checks, or a bounded number of
//     instructions.
//   - Instrument never panics on any input; a module it cannot decode (or a
//     feature it does not know) is an error, never a silently wrong rewrite.
//
// The package imports the standard library only.
package fuel
