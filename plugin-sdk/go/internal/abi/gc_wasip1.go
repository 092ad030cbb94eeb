//go:build wasip1

package abi

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// The collector never starts by itself in a filter: the host calls cabi_realloc from inside host
// calls (to return strings and lists), and a collection that started there, with host frames on the
// Wasm stack below the Go code, would need to switch goroutines and traps the instance instead. So
// automatic collection is off and Collect runs the collector at the start of an export (where a
// switch is safe) once CollectEvery bytes were allocated since the last collection.
func init() { debug.SetGCPercent(-1) }

// CollectEvery is how many bytes a filter may allocate between two collections.
const CollectEvery = 4 << 20

var (
	allocs      = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	collectedAt uint64
)

// Collect runs the collector if CollectEvery bytes were allocated since it last ran. Call it only
// at the start of an export.
func Collect() {
	metrics.Read(allocs)
	if allocs[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	now := allocs[0].Value.Uint64()
	if now-collectedAt < CollectEvery {
		return
	}
	runtime.GC()
	metrics.Read(allocs)
	collectedAt = allocs[0].Value.Uint64()
}
