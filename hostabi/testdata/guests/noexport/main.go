// Guest noexport lacks auth_handle: the host must refuse it at load.
package main

//go:wasmexport something_else
func somethingElse() int64 { return 0 }

func main() {}
