package plaidsim

// Sign returns a valid Plaid-Verification JWT for body under the current
// key, as a delivery would carry. Load generators and benchmarks use it to
// pre-sign many webhooks without delivering them.
func (s *Server) Sign(body []byte) (string, error) { return s.sign(body, FaultNone) }
