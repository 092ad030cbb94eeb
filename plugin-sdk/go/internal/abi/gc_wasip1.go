//go:build wasip1

package abi

// Collect does nothing: the collector runs by itself.
func Collect() {}
