// Package clock is the gateway's time (Go's time package also works in a filter, through WASI;
// these are the WIT world's clock calls).
package clock

import "gateway/filter/internal/abi"

// NowMs is wall-clock time: milliseconds since the Unix epoch.
func NowMs() uint64 { return abi.NowMs() }

// MonotonicNs is a monotonic clock in nanoseconds (only differences mean something).
func MonotonicNs() uint64 { return abi.MonotonicNs() }
