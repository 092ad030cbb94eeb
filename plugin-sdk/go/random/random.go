// Package random is randomness from the gateway's cryptographically secure generator.
package random

import "gateway/filter/internal/abi"

// MaxBytes is the most Bytes returns in one call (the host's limit).
const MaxBytes = 65536

// Bytes is n random bytes (n at most MaxBytes).
func Bytes(n uint32) []byte { return abi.RandomBytes(n) }

// Uint64 is a random 64-bit number.
func Uint64() uint64 { return abi.RandomU64() }
