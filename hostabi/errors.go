package hostabi

import (
	"errors"
	"fmt"
)

var (
	// ErrTimeout means a call ran past its deadline; the instance was killed.
	ErrTimeout = errors.New("hostabi: plugin call timed out")
	// ErrClosed means the plugin was closed (for example after a reload).
	ErrClosed = errors.New("hostabi: plugin closed")
	// ErrBusy means no instance became free within the call's deadline.
	ErrBusy = errors.New("hostabi: no plugin instance available")
	// ErrRefused wraps every reason a module is refused at load.
	ErrRefused = errors.New("hostabi: module refused")
	// ErrBadResult means the guest returned a value the ABI does not define,
	// or allowed without setting a subject.
	ErrBadResult = errors.New("hostabi: plugin returned an invalid result")
	// ErrPenalty means the plugin failed too often in a row and is in its
	// penalty box: the call failed fast without running the guest.
	ErrPenalty = errors.New("hostabi: plugin is in its penalty box")
	// ErrOverShare means the plugin's calls used more than its CPU share
	// (PluginOptions.CPUShare) lately: the call failed fast without running
	// the guest.
	ErrOverShare = errors.New("hostabi: plugin is over its CPU share")
	// ErrLimits means a PluginOptions limit is out of range (see
	// MaxMemoryPages, MaxPoolSize).
	ErrLimits = errors.New("hostabi: plugin limit out of range")
)

// TrapError is a guest that trapped, exited, panicked or made a host
// function fail (for example with an out-of-range pointer). The instance is
// discarded.
type TrapError struct {
	Tenant, Plugin, Export string
	Err                    error
	// Stderr holds the start of what the guest wrote to stderr (a Go panic
	// message, for instance); for logs only.
	Stderr string
}

func (e *TrapError) Error() string {
	return fmt.Sprintf("hostabi: %s/%s: %s trapped: %v", e.Tenant, e.Plugin, e.Export, e.Err)
}

func (e *TrapError) Unwrap() error { return e.Err }

// guestFault is what host functions panic with when the guest passed
// something the host cannot accept (an out-of-range pointer). wazero turns
// the panic into an error from the call; the instance is then discarded.
type guestFault struct{ msg string }

func (g *guestFault) Error() string { return "guest fault: " + g.msg }

func fault(msg string) { panic(&guestFault{msg}) }
