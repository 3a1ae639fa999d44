package proxy

// maxBufferedResponse is the largest sized (Content-Length) upstream
// response read whole before it is answered: that frees the upstream
// connection at once. The upstream transport reads it straight into the
// upstream response (upstream_transport.go), whose buffer then moves to the
// client's without a copy (relayResponse). Larger sized responses stream
// like chunked ones (upstreamBody in reverseproxy.go), so the proxy holds
// a few buffers of a 200 MiB download, not the download; they are capped
// by MaxResponseBytes from their Content-Length before anything is sent.
// See RATIONALE.md "Why stream responses?".
const maxBufferedResponse = 64 << 10
