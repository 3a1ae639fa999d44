package fuel

import (
	"errors"
	"fmt"

	"github.com/safeclose/safeclose/hostabi/internal/wasmbin"
)

// maxDepth bounds the control nesting of one function (wazero's own limit
// is far lower in practice; this only keeps a hostile body from growing the
// frame stack without bound).
const maxDepth = 1 << 16

// site is where a charge goes: at offset in the body (after a loop's block
// type, or after the locals for the function entry), paying cost.
type site struct {
	off  int
	cost int64
}

// check appends the charge-and-check sequence:
//
//	global.get $fuel; i64.const cost; i64.sub; global.set $fuel
//	global.get $fuel; global.get $limit; i64.lt_s
//	if unreachable end
func check(dst []byte, fuel, limit uint32, cost int64) []byte {
	dst = append(dst, opGlobalGet)
	dst = wasmbin.AppendULEB(dst, uint64(fuel))
	dst = append(dst, opI64Const)
	dst = wasmbin.AppendSLEB(dst, cost)
	dst = append(dst, opI64Sub, opGlobalSet)
	dst = wasmbin.AppendULEB(dst, uint64(fuel))
	dst = append(dst, opGlobalGet)
	dst = wasmbin.AppendULEB(dst, uint64(fuel))
	dst = append(dst, opGlobalGet)
	dst = wasmbin.AppendULEB(dst, uint64(limit))
	return append(dst, opI64LtS, opIf, blockEmpty, opUnreachable, opEnd)
}

// instrumentBody appends the rewritten body (locals and code, without its
// size) to dst.
func instrumentBody(dst, body []byte, fuel, limit uint32, count bool) ([]byte, error) {
	r := &wasmbin.Reader{B: body}
	for n := r.Vec(); n > 0 && r.Err == nil; n-- {
		r.U32()
		skipValType(r)
	}
	if r.Err != nil {
		return nil, fmt.Errorf("locals: %w", r.Err)
	}
	sites := []site{{off: r.Off}} // [0] is the function entry
	// attr is the site that pays for the current instruction; frames
	// remember the attr of the enclosing block to restore at its end.
	attr := 0
	var frames []int
	calls := false
	for r.Err == nil {
		if r.Left() == 0 {
			return nil, errors.New("code: missing end")
		}
		op := r.Byte()
		sites[attr].cost++
		skipImmediates(r, op)
		if r.Err != nil {
			break
		}
		switch {
		case op == opBlock, op == opIf, op == opTry, op == opTryTable:
			frames = append(frames, attr)
		case op == opLoop:
			frames = append(frames, attr)
			attr = len(sites)
			sites = append(sites, site{off: r.Off})
		case op == opDelegate, op == opEnd:
			if len(frames) == 0 {
				if r.Left() != 0 {
					return nil, errors.New("code: bytes after the final end")
				}
				return emit(dst, body, sites, calls, fuel, limit, count), nil
			}
			attr = frames[len(frames)-1]
			frames = frames[:len(frames)-1]
		case isCall(op):
			calls = true
		}
		if len(frames) > maxDepth {
			return nil, errors.New("code: nesting too deep")
		}
	}
	return nil, fmt.Errorf("code: %w", r.Err)
}

func emit(dst, body []byte, sites []site, calls bool, fuel, limit uint32, count bool) []byte {
	if !calls && len(sites) == 1 {
		return append(dst, body...) // a leaf without loops: bounded
	}
	prev := 0
	for i, s := range sites {
		if i == 0 && !calls {
			continue // no recursion through here: loops pay for themselves
		}
		dst = append(dst, body[prev:s.off]...)
		cost := int64(1)
		if count {
			cost = s.cost
		}
		dst = check(dst, fuel, limit, cost)
		prev = s.off
	}
	return append(dst, body[prev:]...)
}
