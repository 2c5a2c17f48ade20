//! The driver side's heap, and the proof that the device side never uses it.
//!
//! virtio-drivers' `VirtIONet` needs `alloc` (receive buffers, transmit
//! buffers, indirect descriptor tables). The image's `#[global_allocator]`
//! is an `embedded-alloc` linked-list heap over 1 MiB of the guest RAM
//! (`guest::HEAP`), wrapped by a counter. Every device-side entry (the EL2
//! trap and hypercall handler, or a direct call into the device at EL1) runs
//! inside [`device_context`]: an allocator call made there is counted in
//! [`DEVICE_HEAP_CALLS`] and an allocation fails (returns null). The test
//! `heap_stays_empty_in_the_device_path` checks that count is 0 after the
//! exchange and the hostile tests, that the device was entered, that the
//! driver did allocate, and that the guard does catch an allocation made in
//! device context (a deliberate one).

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use embedded_alloc::LlffHeap;

use crate::guest;

/// The counting allocator.
pub struct CountingHeap {
    heap: LlffHeap,
}

#[global_allocator]
static HEAP: CountingHeap = CountingHeap {
    heap: LlffHeap::empty(),
};

/// Allocations served to the driver side.
pub static DRIVER_ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Deallocations made by the driver side.
pub static DRIVER_FREES: AtomicU64 = AtomicU64::new(0);
/// Allocator calls (alloc, dealloc, realloc) made in device context: must
/// stay 0.
pub static DEVICE_HEAP_CALLS: AtomicU64 = AtomicU64::new(0);
/// Number of device-side entries (traps, hypercalls, direct calls).
pub static DEVICE_ENTRIES: AtomicU64 = AtomicU64::new(0);

static DEVICE_CONTEXT: AtomicBool = AtomicBool::new(false);

/// Hands the heap area of the guest RAM to the allocator. Called once, at
/// boot, before anything allocates.
pub fn init() {
    // SAFETY: called once at boot; `[guest::HEAP, + HEAP_LEN)` is part of
    // the guest RAM static, used for nothing else.
    unsafe {
        HEAP.heap
            .init(guest::ptr(guest::HEAP).expose_provenance(), guest::HEAP_LEN)
    };
}

/// Bytes currently allocated.
pub fn used() -> usize {
    HEAP.heap.used()
}

/// Runs `f` as device code: allocator calls inside it are counted in
/// [`DEVICE_HEAP_CALLS`], and allocations fail.
pub fn device_context<R>(f: impl FnOnce() -> R) -> R {
    let outer = DEVICE_CONTEXT.swap(true, Ordering::SeqCst);
    DEVICE_ENTRIES.fetch_add(1, Ordering::Relaxed);
    let r = f();
    DEVICE_CONTEXT.store(outer, Ordering::SeqCst);
    r
}

fn in_device_context() -> bool {
    if DEVICE_CONTEXT.load(Ordering::SeqCst) {
        DEVICE_HEAP_CALLS.fetch_add(1, Ordering::SeqCst);
        true
    } else {
        false
    }
}

// SAFETY: forwards to `LlffHeap`, a correct allocator, or returns null
// (allowed: allocation failure); deallocation always forwards, so a pointer
// from this allocator is always returned to it.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if in_device_context() {
            return core::ptr::null_mut();
        }
        DRIVER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's `GlobalAlloc::alloc` contract.
        unsafe { self.heap.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !in_device_context() {
            DRIVER_FREES.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's `GlobalAlloc::dealloc` contract.
        unsafe { self.heap.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if in_device_context() {
            return core::ptr::null_mut();
        }
        DRIVER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's `GlobalAlloc::realloc` contract.
        unsafe { self.heap.realloc(ptr, layout, new_size) }
    }
}
