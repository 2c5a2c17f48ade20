//! The driver's RAM ("guest memory"): one page-aligned static that the
//! device reaches through `virtnet_baremetal::memory` (identity-mapped:
//! guest-physical address = address). The driver's heap, its DMA pages and
//! bounce buffers, and the hostile tests' rings all live in it. Everything
//! else in the image (code, stacks, the device's own statics, the frame
//! pools) is outside it, so a descriptor pointing there is refused by the
//! core's range check, as memory a real guest does not own would be.

use core::cell::UnsafeCell;

use virtnet_baremetal::memory::RamRange;

/// Size of the guest RAM.
pub const SIZE: usize = 2 << 20;

/// The driver's heap: `[HEAP, HEAP + HEAP_LEN)`.
pub const HEAP: usize = 0;
/// Heap size.
pub const HEAP_LEN: usize = 1 << 20;
/// Pages handed out by the driver's `Hal::dma_alloc` (virtqueue rings).
pub const DMA: usize = HEAP + HEAP_LEN;
/// Size of the DMA page area.
pub const DMA_LEN: usize = 512 << 10;
/// Bounce chunks for buffers the driver shares from outside guest RAM (its
/// stack: virtio-drivers sends the net header from a local).
pub const BOUNCE: usize = DMA + DMA_LEN;
/// Size of one bounce chunk.
pub const CHUNK: usize = 4096;
/// Number of bounce chunks.
pub const CHUNKS: usize = 16;
/// Scratch area of the hostile-guest tests (rings and buffers).
pub const SCRATCH: usize = BOUNCE + CHUNK * CHUNKS;
/// Size of the scratch area.
pub const SCRATCH_LEN: usize = SIZE - SCRATCH;

const _: () = assert!(SCRATCH_LEN >= 256 << 10);

#[repr(C, align(4096))]
struct Ram(UnsafeCell<[u8; SIZE]>);

// SAFETY: the bytes are only accessed through raw pointers (the core's
// copies and atomics on the device side, the driver's own code and heap on
// the other), never through references to the static.
unsafe impl Sync for Ram {}

/// In `.bss`: zeroed by the boot code.
static RAM: Ram = Ram(UnsafeCell::new([0; SIZE]));

/// Guest-physical (= physical) address of the guest RAM.
pub fn base() -> usize {
    RAM.0.get().cast::<u8>().expose_provenance()
}

/// A pointer to byte `offset` of the guest RAM (not checked).
pub fn ptr(offset: usize) -> *mut u8 {
    RAM.0.get().cast::<u8>().wrapping_add(offset)
}

/// The guest-physical address of byte `offset`.
pub fn addr(offset: usize) -> u64 {
    (base() + offset) as u64
}

/// Whether `[addr, addr + len)` lies inside the guest RAM.
pub fn contains(addr: usize, len: usize) -> bool {
    addr >= base()
        && addr
            .checked_add(len)
            .is_some_and(|end| end <= base() + SIZE)
}

/// The guest RAM as one identity-mapped range.
pub fn range() -> RamRange {
    RamRange::identity(base(), SIZE)
}
