// Package kv is the shared key-value store, in the namespace granted by the plugin's
// `capabilities.kv_namespace` (without one, every call fails with filter.ErrDenied). Every write
// gets a new version, used by CompareAndSwap.
//
//	hits, err := kv.Increment("hits", 1)
package kv

import (
	"time"

	"gateway/filter/internal/abi"
)

// Entry is a value and the version of the write that made it (never 0).
type Entry struct {
	Value   []byte
	Version uint32
}

// Get is the value of key, or nil if it is not set (or expired).
func Get(key string) (*Entry, error) {
	v, ver, found, err := abi.KVGet(key)
	if err != nil || !found {
		return nil, err
	}
	return &Entry{Value: v, Version: ver}, nil
}

func ttlMs(ttl time.Duration) *uint64 {
	if ttl <= 0 {
		return nil
	}
	ms := uint64(ttl.Milliseconds())
	if ms == 0 {
		ms = 1
	}
	return &ms
}

// Set sets key (with ttl > 0 it expires after ttl, rounded to milliseconds; 0 means never) and
// returns the write's version.
func Set(key string, value []byte, ttl time.Duration) (uint32, error) {
	return abi.KVSet(key, value, ttlMs(ttl))
}

// Delete removes key (nothing happens if it is absent).
func Delete(key string) error { return abi.KVDelete(key) }

// Increment adds delta to the decimal integer at key (absent counts as 0), atomically, and returns
// the new value. An existing TTL is kept. filter.ErrNotANumber if the value is not an integer.
func Increment(key string, delta int64) (int64, error) { return abi.KVIncrement(key, delta) }

// CompareAndSwap writes value only if version is key's current version and returns the new
// version; filter.ErrVersionMismatch otherwise. ttl as in Set.
func CompareAndSwap(key string, version uint32, value []byte, ttl time.Duration) (uint32, error) {
	return abi.KVCompareAndSwap(key, version, value, ttlMs(ttl))
}
