// Guest initloop never finishes initialising: Load must give up.
package main

var sink int

func init() {
	for i := 0; ; i++ {
		sink += i
	}
}

//go:wasmexport auth_handle
func authHandle() int64 { return 0 }

func main() {}
