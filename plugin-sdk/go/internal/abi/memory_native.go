//go:build !wasip1

package abi

// noHost is the panic of a host call made outside the gateway without a test host.
const noHost = "gateway host calls are only available in a GOOS=wasip1 build run by the gateway"

func init() { Mem = NewFakeMemory() }

// Collect does nothing natively: the collector runs as usual.
func Collect() {}
