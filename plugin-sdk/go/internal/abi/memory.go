// Package abi is the canonical-ABI glue of the gateway's WIT world (wit/world.wit,
// gateway:filter@0.1.5) for 32-bit linear memory: the layouts of its records, variants, options,
// results and lists, how they are lifted out of and lowered into memory, and the raw host imports.
// It is internal: filter authors use the packages above it and never see a pointer.
//
// Everything here works on a Memory, so the layout code is the same in a wasip1 build (the real
// linear memory) and in native tests (FakeMemory).
package abi

import "encoding/binary"

// Memory is linear memory as the glue sees it.
type Memory interface {
	// Bytes is a view of n bytes at ptr.
	Bytes(ptr, n uint32) []byte
	// Alloc returns a zeroed block of size bytes aligned to align (at most 8), alive until the
	// Release of a mark taken before it.
	Alloc(size, align uint32) uint32
	// String returns the address of s's bytes (kept alive like Alloc).
	String(s string) uint32
	// Slice returns the address of b's bytes (kept alive like Alloc).
	Slice(b []byte) uint32
	// Mark is the current allocation level.
	Mark() int
	// Release frees (for the garbage collector) what was allocated since mark.
	Release(mark int)
}

// Mem is the memory of this build: the linear memory under wasip1, a FakeMemory natively.
var Mem Memory

func u8(m Memory, at uint32) uint8   { return m.Bytes(at, 1)[0] }
func u16(m Memory, at uint32) uint16 { return binary.LittleEndian.Uint16(m.Bytes(at, 2)) }
func u32(m Memory, at uint32) uint32 { return binary.LittleEndian.Uint32(m.Bytes(at, 4)) }
func u64(m Memory, at uint32) uint64 { return binary.LittleEndian.Uint64(m.Bytes(at, 8)) }

func put8(m Memory, at uint32, v uint8)   { m.Bytes(at, 1)[0] = v }
func put16(m Memory, at uint32, v uint16) { binary.LittleEndian.PutUint16(m.Bytes(at, 2), v) }
func put32(m Memory, at uint32, v uint32) { binary.LittleEndian.PutUint32(m.Bytes(at, 4), v) }

// FakeMemory is a Memory backed by a byte slice, for native tests: addresses are offsets into it
// (0 is never allocated), and String/Slice copy their argument in, as a host would see it.
type FakeMemory struct {
	data []byte
}

// NewFakeMemory returns an empty FakeMemory.
func NewFakeMemory() *FakeMemory { return &FakeMemory{data: make([]byte, 8, 4096)} }

// Bytes implements Memory; it panics outside the allocated range, like a trap.
func (f *FakeMemory) Bytes(ptr, n uint32) []byte {
	end := uint64(ptr) + uint64(n)
	if end > uint64(len(f.data)) {
		panic("abi: access out of bounds of the fake memory")
	}
	return f.data[ptr:end:end]
}

// Alloc implements Memory.
func (f *FakeMemory) Alloc(size, align uint32) uint32 {
	if align == 0 {
		align = 1
	}
	p := (uint32(len(f.data)) + align - 1) &^ (align - 1)
	need := int(p + size)
	for len(f.data) < need {
		f.data = append(f.data, 0)
	}
	return p
}

// String implements Memory.
func (f *FakeMemory) String(s string) uint32 {
	p := f.Alloc(uint32(len(s)), 1)
	copy(f.data[p:], s)
	return p
}

// Slice implements Memory.
func (f *FakeMemory) Slice(b []byte) uint32 {
	p := f.Alloc(uint32(len(b)), 1)
	copy(f.data[p:], b)
	return p
}

// Mark implements Memory.
func (f *FakeMemory) Mark() int { return len(f.data) }

// Release implements Memory.
func (f *FakeMemory) Release(mark int) {
	if mark < 8 {
		mark = 8
	}
	if mark < len(f.data) {
		f.data = f.data[:mark]
	}
}

// Size is how many bytes are in use.
func (f *FakeMemory) Size() int { return len(f.data) }
