// Guest oob hands the host a pointer far outside its memory.
package main

import "unsafe"

//go:wasmimport safeclose_v1 get_method
func getMethod(buf unsafe.Pointer, limit uint32) uint32

//go:wasmexport auth_handle
func authHandle() int64 {
	getMethod(unsafe.Pointer(uintptr(0xFFFFFF00)), 64)
	return 0
}

func main() {}
