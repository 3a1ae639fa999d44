package hostabi

// ReadsBody reports whether the plugin was granted the body capability, so
// a call may read the request body (get_body). The proxy keeps the bodies
// of such a plugin's tenant buffered instead of streaming them (see
// RATIONALE.md "Why stream request bodies?").
func (p *Plugin) ReadsBody() bool { return p.opts.Caps.Body }
