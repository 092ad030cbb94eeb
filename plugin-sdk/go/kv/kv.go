// Package kv is the shared key-value store, in the namespace granted by the plugin's
// `capabilities.kv_namespace` (without one, every call fails with filter.ErrDenied). Every write
// gets a new version, used by CompareAndSwap.
//
// A namespace lives in the gateway process (Local) or in Redis (Redis), shared by every gateway
// configured with the same server (the gateway config's `kv_namespaces:`). On Redis any call can
// fail with filter.ErrUnavailable (the server did not answer in time or could not be reached), and
// whether a write took effect is then unknown.
//
//	hits, err := kv.Increment("hits", 1)
//	inWindow, err := kv.IncrementWithTTL("hits:"+window, 1, time.Minute)
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

// BackendKind is where the plugin's namespace lives.
type BackendKind uint8

// The backends.
const (
	// Local: in this gateway process.
	Local = BackendKind(abi.BackendLocal)
	// Redis: in Redis, shared by every gateway process configured with the same server.
	Redis = BackendKind(abi.BackendRedis)
)

// String is the backend's name as the gateway config writes it ("local", "redis").
func (b BackendKind) String() string {
	switch b {
	case Local:
		return "local"
	case Redis:
		return "redis"
	}
	return "unknown"
}

// Backend is where the plugin's namespace lives; filter.ErrDenied when none is granted.
func Backend() (BackendKind, error) {
	b, err := abi.StoreBackend()
	return BackendKind(b), err
}

// Get is the value of key, or nil if it is not set (or expired).
func Get(key string) (*Entry, error) {
	v, ver, found, err := abi.StoreGet(key)
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
	return abi.StoreSet(key, value, ttlMs(ttl))
}

// Delete removes key (nothing happens if it is absent).
func Delete(key string) error { return abi.StoreDelete(key) }

// Increment adds delta to the decimal integer at key (absent counts as 0), atomically, and returns
// the new value. An existing TTL is kept. filter.ErrNotANumber if the value is not an integer,
// filter.ErrInvalid if the sum overflows an int64.
func Increment(key string, delta int64) (int64, error) { return abi.StoreIncrement(key, delta, nil) }

// IncrementWithTTL is Increment, and when this call creates key (absent or expired) it expires
// after ttl (as in Set; 0 means never, as Increment); an existing expiry, or the lack of one, is
// kept. A window counter in one call, atomic across every gateway sharing the namespace.
func IncrementWithTTL(key string, delta int64, ttl time.Duration) (int64, error) {
	return abi.StoreIncrement(key, delta, ttlMs(ttl))
}

// CompareAndSwap writes value only if version is key's current version and returns the new
// version; filter.ErrVersionMismatch otherwise. ttl as in Set.
func CompareAndSwap(key string, version uint32, value []byte, ttl time.Duration) (uint32, error) {
	return abi.StoreCompareAndSwap(key, version, value, ttlMs(ttl))
}
