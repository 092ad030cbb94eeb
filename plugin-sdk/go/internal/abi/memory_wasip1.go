//go:build wasip1

package abi

import "unsafe"

// linear is the real linear memory. Blocks handed to the host (Alloc, String, Slice, and what the
// host allocates through cabi_realloc) are Go objects kept reachable in `keep` until released, so
// the garbage collector neither frees nor reuses them while the host may read or write them (Go's
// collector does not move objects).
type linear struct {
	keep []unsafe.Pointer
}

var wasm = &linear{}

func init() { Mem = wasm }

func (l *linear) Bytes(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	// Linear-memory addresses are the Go pointers of this build (wasm32 memory, 0-based).
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), ptr)), n)
}

func (l *linear) Alloc(size, align uint32) uint32 {
	if align > 8 {
		panic("abi: alignment above 8")
	}
	words := make([]uint64, (size+7)/8+1)
	p := unsafe.Pointer(&words[0])
	l.keep = append(l.keep, p)
	return uint32(uintptr(p))
}

func (l *linear) String(s string) uint32 {
	p := unsafe.Pointer(unsafe.StringData(s))
	l.keep = append(l.keep, p)
	return uint32(uintptr(p))
}

func (l *linear) Slice(b []byte) uint32 {
	p := unsafe.Pointer(unsafe.SliceData(b))
	l.keep = append(l.keep, p)
	return uint32(uintptr(p))
}

func (l *linear) Mark() int { return len(l.keep) }

func (l *linear) Release(mark int) {
	clear(l.keep[mark:])
	l.keep = l.keep[:mark]
}

// cabiRealloc is how the host allocates in the guest (strings and lists it returns, and the
// arguments of exports). The block lives until the call that asked for it releases it.
//
//go:wasmexport cabi_realloc
func cabiRealloc(old, oldSize, align, newSize uint32) uint32 {
	p := wasm.Alloc(newSize, align)
	if old != 0 && oldSize > 0 {
		copy(wasm.Bytes(p, min(oldSize, newSize)), wasm.Bytes(old, min(oldSize, newSize)))
	}
	return p
}

// adapterArenaSize is the static memory the WASI preview 1 adapter may allocate (its state, once).
const adapterArenaSize = 256 << 10

// adapterArena is where cabiReallocAdapter allocates: Go's static data, which the Go heap never
// overlaps. (An adapter that grew memory itself, `--realloc-via-memory-grow`, would get pages the
// Go runtime later hands out again: Go's sbrk assumes it owns all memory past its data.)
var (
	adapterArena [adapterArenaSize]byte
	adapterUsed  uint32
)

// cabiReallocAdapter is the WASI adapter's allocator. The adapter calls it first while the Go runtime
// is still initializing (from the runtime's first WASI calls), so it must not allocate, grow the
// stack or touch the scheduler: a bump allocator over a static array.
//
//go:wasmexport cabi_realloc_adapter
//go:nosplit
func cabiReallocAdapter(old, oldSize, align, newSize uint32) uint32 {
	if align == 0 {
		align = 1
	}
	start := (adapterUsed + align - 1) &^ (align - 1)
	if newSize > adapterArenaSize || start > adapterArenaSize-newSize {
		return 0 // the adapter traps on a null allocation
	}
	adapterUsed = start + newSize
	base := uint32(uintptr(unsafe.Pointer(&adapterArena[0])))
	if old != 0 && oldSize > 0 {
		n := min(oldSize, newSize)
		copy(adapterArena[start:start+n], unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), old)), n))
	}
	return base + start
}
