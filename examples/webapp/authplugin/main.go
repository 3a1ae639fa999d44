package main

// main is empty: a Safeclose plugin is a reactor (-buildmode=c-shared); the
// host calls its exported handler. This file lets `go build ./...` on the
// host compile the package too.
func main() {}
