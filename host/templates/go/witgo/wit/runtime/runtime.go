// Package runtime is the memory side of the canonical ABI for Go guests: the allocator
// the bindings use for argument and return areas, and `cabi_realloc`, through which the
// host writes what it hands the guest (an export's arguments, an import's results) into
// the guest's memory.
package runtime

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"unsafe"
)

// Allocate returns size bytes aligned to align from the Go heap, pinned in pinner: the
// garbage collector leaves them in place, and alive, until pinner.Unpin.
func Allocate(pinner *runtime.Pinner, size, align uintptr) unsafe.Pointer {
	if size == 0 {
		// A valid, aligned address that is never read; nothing to pin.
		return unsafe.Pointer(align)
	}
	pointer := allocate(size, align)
	pinner.Pin(pointer)
	return pointer
}

// allocate backs the block with a slice of the alignment's word size, so the heap
// aligns it.
func allocate(size, align uintptr) unsafe.Pointer {
	words := (size + align - 1) / align
	switch align {
	case 1:
		return unsafe.Pointer(unsafe.SliceData(make([]uint8, words)))
	case 2:
		return unsafe.Pointer(unsafe.SliceData(make([]uint16, words)))
	case 4:
		return unsafe.Pointer(unsafe.SliceData(make([]uint32, words)))
	case 8:
		return unsafe.Pointer(unsafe.SliceData(make([]uint64, words)))
	default:
		panic(fmt.Sprintf("canonical ABI: unsupported alignment %d", align))
	}
}

// received pins what the host wrote through cabi_realloc. The generated export code
// calls Unpin once it has lifted its arguments: from then on the Go values that point
// into those blocks (strings and slices are not copied) keep them alive.
var received runtime.Pinner

// Unpin releases the blocks the host has written since the last call.
func Unpin() {
	received.Unpin()
	collectIfDue()
}

// The collector never starts on its own (a cycle that starts or ends inside
// cabi_realloc reads the wall clock or polls timers: host calls, which trap there);
// collectIfDue runs one at the start of an export when the heap has doubled.
var (
	heapSample = []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
	}
	heapGoal uint64
)

func collectIfDue() {
	metrics.Read(heapSample)
	if heapSample[0].Value.Uint64() < heapGoal {
		return
	}
	runtime.GC()
	metrics.Read(heapSample)
	heapGoal = 2*heapSample[0].Value.Uint64() + 4<<20
}

// ready is false until this package's init has run. Before that (while the Go runtime
// itself starts, and the WASI adapter asks for its state) the heap is not ours to use,
// and blocks come from early instead: the adapter's state is well under a page.
var ready = false

func init() {
	debug.SetGCPercent(-1)
	ready = true
}

var (
	early     [128 << 10]byte
	earlyUsed uintptr
)

func allocateEarly(size, align uintptr) unsafe.Pointer {
	base := uintptr(unsafe.Pointer(&early[0]))
	start := (base + earlyUsed + align - 1) &^ (align - 1)
	if start+size > base+uintptr(len(early)) {
		panic("cabi_realloc: out of start-up memory before the Go runtime was ready")
	}
	earlyUsed = start + size - base
	return unsafe.Pointer(start)
}

// The WASI adapter's switch that makes its monotonic clock return a cached reading. The
// collector reads the clock while it allocates, and a guest must not call the host from
// inside cabi_realloc: the component model traps such a call.
//
//go:wasmimport wasi_snapshot_preview1 adapter_monotonic_clock_set_paused
func clockSetPaused(paused bool)

//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, newSize uintptr) unsafe.Pointer {
	if old != nil || oldSize != 0 {
		// The host only ever asks for new blocks; growing one is not part of its use.
		panic("cabi_realloc: resizing a block is not supported")
	}
	if !ready {
		return allocateEarly(newSize, align)
	}
	clockSetPaused(true)
	pointer := Allocate(&received, newSize, align)
	clockSetPaused(false)
	return pointer
}
