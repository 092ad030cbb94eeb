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

// MaxCheckInterval is the most exports between two looks at the allocation counter. Reading it is
// not free (and the first read in an instance sets up the runtime's metrics), so a filter that
// allocates little looks only every MaxCheckInterval exports, and a fresh instance, which serves one
// request, never does.
const MaxCheckInterval = 16

var (
	allocs      = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	collectedAt uint64
	lastRead    uint64
	interval    = MaxCheckInterval
	countdown   = MaxCheckInterval
)

// Collect runs the collector if CollectEvery bytes were allocated since it last ran. It looks at the
// allocation counter every few exports: as often as the allocation rate seen at the last look
// requires for at most half of CollectEvery to be allocated between two looks (so the heap stays
// under about 1.5 × CollectEvery of garbage), and at most every MaxCheckInterval exports. Call it only
// at the start of an export.
func Collect() {
	countdown--
	if countdown > 0 {
		return
	}
	metrics.Read(allocs)
	if allocs[0].Value.Kind() != metrics.KindUint64 {
		countdown = MaxCheckInterval
		return
	}
	now := allocs[0].Value.Uint64()
	perExport := (now - lastRead) / uint64(interval)
	lastRead = now
	interval = MaxCheckInterval
	if perExport > 0 {
		if n := CollectEvery / 2 / perExport; n < MaxCheckInterval {
			interval = int(max(n, 1))
		}
	}
	countdown = interval
	if now-collectedAt < CollectEvery {
		return
	}
	runtime.GC()
	metrics.Read(allocs)
	collectedAt = allocs[0].Value.Uint64()
	lastRead = collectedAt
}
