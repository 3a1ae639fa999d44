package hostabi

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/safeclose/safeclose/hostabi/abi"
)

// Kind is what a plugin is for; it decides the export it must provide and
// the host functions it may import.
type Kind int

// Plugin kinds.
const (
	KindAuth  Kind = iota // exports auth_handle
	KindEvent             // exports event_handle
)

func (k Kind) String() string {
	if k == KindEvent {
		return "event"
	}
	return "auth"
}

func (k Kind) export() string {
	if k == KindEvent {
		return abi.ExportEvent
	}
	return abi.ExportAuth
}

// Capabilities are the optional host functions a plugin is granted.
type Capabilities struct {
	Config bool // get_config
	Log    bool // log, log_enabled
	Clock  bool // now
	KV     bool // kv_get, kv_set, kv_delete
	Crypto bool // jwt_verify, jwt_claim, hmac_sha256_verify, sha256
	Body   bool // get_body (auth plugins), up to PluginOptions.BodyLimit bytes
}

// capabilityFields is the one table of capability names: config files, the
// plugin CLI's -cap flag and the host module's import check all use it.
var capabilityFields = [...]struct {
	name string
	get  func(*Capabilities) *bool
}{
	{"config", func(c *Capabilities) *bool { return &c.Config }},
	{"log", func(c *Capabilities) *bool { return &c.Log }},
	{"clock", func(c *Capabilities) *bool { return &c.Clock }},
	{"kv", func(c *Capabilities) *bool { return &c.KV }},
	{"crypto", func(c *Capabilities) *bool { return &c.Crypto }},
	{"body", func(c *Capabilities) *bool { return &c.Body }},
}

// CapabilityNames returns every capability name, in a fixed order.
func CapabilityNames() []string {
	names := make([]string, len(capabilityFields))
	for i, f := range capabilityFields {
		names[i] = f.name
	}
	return names
}

// ErrUnknownCapability is returned by ParseCapabilities for a name that is
// not in CapabilityNames.
var ErrUnknownCapability = errors.New("hostabi: unknown capability")

// ParseCapabilities grants each named capability. Empty names are ignored;
// an unknown name is an error wrapping ErrUnknownCapability.
func ParseCapabilities(names []string) (Capabilities, error) {
	var c Capabilities
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		p := c.field(n)
		if p == nil {
			return Capabilities{}, fmt.Errorf("%w %q", ErrUnknownCapability, n)
		}
		*p = true
	}
	return c, nil
}

// String lists the granted capabilities, comma-separated, in the order of
// CapabilityNames; ParseCapabilities(strings.Split(c.String(), ",")) is c.
func (c Capabilities) String() string {
	var b strings.Builder
	for _, f := range capabilityFields {
		if *f.get(&c) {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(f.name)
		}
	}
	return b.String()
}

func (c *Capabilities) field(name string) *bool {
	for _, f := range capabilityFields {
		if f.name == name {
			return f.get(c)
		}
	}
	return nil
}

func (c Capabilities) has(name string) bool {
	p := c.field(name)
	return p != nil && *p
}

// Request is the read-only view of an HTTP request an auth plugin sees. The
// proxy implements it; slices returned are only read during the call and
// never retained.
type Request interface {
	Method() []byte
	URI() []byte
	// VisitHeaders calls fn for every header line, in order.
	VisitHeaders(fn func(name, value []byte))
	SourceAddr() []byte
	Body() []byte
}

// Claim is one name/value the plugin attached to the identity.
type Claim struct {
	Name, Value string
}

// Decision is an auth plugin's answer. Subject is set when Allow is true;
// Status is the HTTP status of a denial.
//
// Claims is shared with the decision cache when caching is on: read it, do
// not modify it.
type Decision struct {
	Allow   bool
	Status  int
	Subject string
	Claims  []Claim
}

// Event is what a webhook plugin sees: the verified Plaid event and the
// item's context. It never holds an access token.
type Event struct {
	Tenant, User, ItemID, ItemState string
	Body                            []byte
}

// Action is what a webhook plugin asks for.
type Action = abi.Action

// Event actions (see abi).
const (
	ActionKeep    = abi.ActionKeep
	ActionDrop    = abi.ActionDrop
	ActionForward = abi.ActionForward
)

// EventResult is a webhook plugin's answer. Payload is nil unless the
// plugin replaced it; Forward lists destination names given with
// add_forward.
type EventResult struct {
	Action  Action
	Payload []byte
	Forward []string
	// Named: the plugin called add_forward, refused or not. Forward empty
	// with Named set means it meant to choose destinations and named none
	// it could: the caller must not read that as "every destination".
	Named bool
}

// Stats are a plugin's counters since load.
type Stats struct {
	Calls, CacheHits, Traps, Timeouts, Busy, Instances uint64
	CompileTime                                        time.Duration
	// Penalized counts calls failed fast with ErrPenalty (the guest did
	// not run); PenaltyOpens counts how often the box opened; InPenaltyBox
	// is whether it is open (or probing) now.
	Penalized, PenaltyOpens uint64
	InPenaltyBox            bool
	// OverShare counts calls failed fast with ErrOverShare.
	OverShare uint64
}
