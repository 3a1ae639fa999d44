package hostabi

// EnforceNoneForBench runs guests without any deadline enforcement: the
// floor the enforced modes are measured against. Benchmarks only.
const EnforceNoneForBench = enforceNone
