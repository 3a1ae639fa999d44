package fuel

import (
	"fmt"

	"github.com/safeclose/safeclose/hostabi/internal/wasmbin"
)

// Opcodes the rewriter treats specially. The others only need their
// immediates skipped (skipImmediates).
const (
	opUnreachable = 0x00
	opBlock       = 0x02
	opLoop        = 0x03
	opIf          = 0x04
	opElse        = 0x05
	opTry         = 0x06 // legacy exception handling
	opCatch       = 0x07
	opCatchAll    = 0x19
	opDelegate    = 0x18
	opTryTable    = 0x1f
	opEnd         = 0x0b
	opCall        = 0x10
	opCallInd     = 0x11
	opRetCall     = 0x12
	opRetCallInd  = 0x13
	opCallRef     = 0x14
	opRetCallRef  = 0x15
	opGlobalGet   = 0x23
	opGlobalSet   = 0x24
	opI64Const    = 0x42
	opI64LtS      = 0x53
	opI64Sub      = 0x7d
	blockEmpty    = 0x40
	valI64        = 0x7e
)

func isCall(op byte) bool { return op >= opCall && op <= opRetCallRef }

// skipBlockType skips a block type: 0x40, a value type, or a type index
// (all three are one signed LEB128 of up to 33 bits). Reference types with
// a heap type (GC) are refused.
func skipBlockType(r *wasmbin.Reader) {
	switch c := r.SLEB(33); c {
	case -0x1d, -0x1c: // 0x63, 0x64: (ref null ht), (ref ht)
		r.Fail(fmt.Errorf("fuel: typed function references are not supported"))
	}
}

func skipMemArg(r *wasmbin.Reader) {
	align := r.U32()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.U32()
	}
	r.ULEB(64)
}

// skipImmediates skips the immediates of the instruction whose opcode byte
// was just read. It knows the MVP, sign extension, non-trapping float
// conversions, bulk memory, reference types, multi-value, SIMD, threads,
// tail calls and exception handling; anything else is an error.
func skipImmediates(r *wasmbin.Reader, op byte) {
	switch {
	case op == opBlock || op == opLoop || op == opIf || op == opTry:
		skipBlockType(r)
	case op == opTryTable:
		skipBlockType(r)
		for n := r.Vec(); n > 0 && r.Err == nil; n-- {
			switch k := r.Byte(); k {
			case 0, 1: // catch, catch_ref: tag, label
				r.U32()
				r.U32()
			case 2, 3: // catch_all, catch_all_ref: label
				r.U32()
			default:
				r.Fail(fmt.Errorf("fuel: try_table catch kind %#x", k))
			}
		}
	case op <= 0x01, op == opElse, op == 0x0a, op == opEnd, op == 0x0f, op == opCatchAll,
		op == 0x1a, op == 0x1b, op >= 0x45 && op <= 0xc4, op == 0xd1, op == 0xd3, op == 0xd5:
		// No immediates: unreachable, nop, else, throw_ref, end, return,
		// catch_all, drop, select, numeric, sign extension, ref.is_null,
		// ref.as_non_null, ref.eq.
	case op == opCatch, op == 0x08, op == 0x09, op == opDelegate, op == 0x0c, op == 0x0d,
		op == opCall, op == opRetCall, op == opCallRef, op == opRetCallRef,
		op >= 0x20 && op <= 0x26, op == 0xd2, op == 0xd4, op == 0xd6:
		// One index: catch, throw, rethrow, delegate, br, br_if, call,
		// return_call, call_ref, return_call_ref, local/global/table get/set,
		// ref.func, br_on_null, br_on_non_null.
		r.U32()
	case op == 0x0e: // br_table
		for n := r.Vec(); n > 0 && r.Err == nil; n-- {
			r.U32()
		}
		r.U32()
	case op == opCallInd, op == opRetCallInd:
		r.U32()
		r.U32()
	case op == 0x1c: // select t*
		for n := r.Vec(); n > 0 && r.Err == nil; n-- {
			skipValType(r)
		}
	case op >= 0x28 && op <= 0x3e:
		skipMemArg(r)
	case op == 0x3f, op == 0x40: // memory.size, memory.grow
		r.U32()
	case op == 0x41:
		r.SLEB(32)
	case op == opI64Const:
		r.SLEB(64)
	case op == 0x43:
		r.Bytes(4)
	case op == 0x44:
		r.Bytes(8)
	case op == 0xd0: // ref.null ht
		r.SLEB(33)
	case op == 0xfc:
		skipFC(r)
	case op == 0xfd:
		skipSIMD(r)
	case op == 0xfe:
		skipAtomic(r)
	default:
		r.Fail(fmt.Errorf("fuel: unknown opcode %#x", op))
	}
}

func skipValType(r *wasmbin.Reader) {
	switch c := r.Byte(); c {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69:
	default:
		r.Fail(fmt.Errorf("fuel: value type %#x is not supported", c))
	}
}

// skipFC skips a 0xFC-prefixed instruction: saturating truncations, bulk
// memory and table operations.
func skipFC(r *wasmbin.Reader) {
	switch sub := r.U32(); {
	case sub <= 7: // i32/i64.trunc_sat_f32/f64_s/u
	case sub == 8: // memory.init data mem
		r.U32()
		r.U32()
	case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17:
		// data.drop, memory.fill, elem.drop, table.grow/size/fill
		r.U32()
	case sub == 10, sub == 12, sub == 14: // memory.copy, table.init, table.copy
		r.U32()
		r.U32()
	default:
		r.Fail(fmt.Errorf("fuel: unknown opcode 0xfc %d", sub))
	}
}

// skipSIMD skips a 0xFD-prefixed (fixed-width and relaxed SIMD) instruction.
func skipSIMD(r *wasmbin.Reader) {
	switch sub := r.U32(); {
	case sub <= 11, sub == 0x5c, sub == 0x5d: // loads, stores, load_zero
		skipMemArg(r)
	case sub == 12, sub == 13: // v128.const, i8x16.shuffle
		r.Bytes(16)
	case sub >= 0x15 && sub <= 0x22: // extract_lane, replace_lane
		r.Byte()
	case sub >= 0x54 && sub <= 0x5b: // load_lane, store_lane
		skipMemArg(r)
		r.Byte()
	case sub <= 0x113:
	default:
		r.Fail(fmt.Errorf("fuel: unknown opcode 0xfd %d", sub))
	}
}

// skipAtomic skips a 0xFE-prefixed (threads) instruction.
func skipAtomic(r *wasmbin.Reader) {
	switch sub := r.U32(); {
	case sub == 3: // atomic.fence
		r.Byte()
	case sub <= 2, sub >= 0x10 && sub <= 0x4e:
		skipMemArg(r)
	default:
		r.Fail(fmt.Errorf("fuel: unknown opcode 0xfe %d", sub))
	}
}
