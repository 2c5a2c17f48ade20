//! Guest memory, borrowed: the one way the core touches what the guest owns.
//!
//! The core never holds a reference into guest memory (a vCPU may write it at
//! any moment). It copies byte ranges in and out through [`GuestMemory`], and
//! accesses the 16-bit ring indices with acquire/release ordering
//! (VIRTIO 1.2 §2.7.13). Every access is range-checked with checked
//! arithmetic: a range that wraps the 64-bit address space, leaves a region or
//! spans a hole is an error ([`MemError`]), never a panic.
//!
//! Implementations:
//! - [`RegionMemory`]: a fixed set of host-mapped regions (hosted VMMs, HVF,
//!   bare metal). Built from [`Region`]s, whose constructor is the crate's one
//!   `unsafe` entry point for memory.
//! - [`SliceMemory`]: safe, backed by a `&mut [u8]`, for tests.
//!
//! Invariants: I-MEM-1 .. I-MEM-4 in `specs/02-guest-memory.md`.

mod region;
mod slice;

pub use region::{ChainHint, Region, RegionError, RegionMemory};
pub use slice::SliceMemory;

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// A guest-physical address (the address space the driver writes into
/// descriptors and ring registers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GuestAddress(pub u64);

impl GuestAddress {
    /// `self + offset`, or `None` if it wraps the 64-bit address space.
    #[inline]
    pub fn checked_add(self, offset: u64) -> Option<GuestAddress> {
        self.0.checked_add(offset).map(GuestAddress)
    }

    /// `self + offset`, or [`MemError::Overflow`] if it wraps.
    #[inline]
    pub fn offset(self, offset: u64) -> Result<GuestAddress, MemError> {
        self.checked_add(offset).ok_or(MemError::Overflow)
    }

    /// The raw address.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The address of descriptor `index` in the descriptor table at
    /// `self` (VIRTIO 1.2 §2.7.5: 16 bytes each). Wrapping: callers keep
    /// `index` below a table size the layout checked, or only hint.
    #[inline]
    pub(crate) fn descriptor(self, index: u16) -> GuestAddress {
        GuestAddress(self.0.wrapping_add(u64::from(index) << 4))
    }
}

// `GuestAddress::descriptor` shifts by 4: a descriptor is 16 bytes.
const _: () = assert!(crate::wire::Descriptor::SIZE == 16);

/// Why a guest-memory access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MemError {
    /// `[addr, addr + len)` is not entirely inside guest memory: it leaves the
    /// last region or crosses a hole between regions.
    OutOfRange {
        /// First byte of the refused range.
        addr: u64,
        /// Length of the refused range.
        len: u64,
    },
    /// `addr + len` wraps the 64-bit address space.
    Overflow,
    /// An atomic ring-index access at an address that is not 2-aligned.
    Misaligned(u64),
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::OutOfRange { addr, len } => {
                write!(f, "guest range {addr:#x}+{len:#x} is outside guest memory")
            }
            MemError::Overflow => f.write_str("guest address range wraps the address space"),
            MemError::Misaligned(a) => write!(f, "ring index access at misaligned address {a:#x}"),
        }
    }
}

impl core::error::Error for MemError {}

/// Guest memory as the device sees it.
///
/// # Contract for implementors
/// - `read`/`write` copy exactly `buf.len()` bytes or fail without partial
///   effect on the *host* side; they must fail (never panic, never touch
///   anything else) if any byte of the range is outside guest memory or the
///   range wraps.
/// - `load_u16_acquire` is an acquire load, `store_u16_release` a release
///   store (they order the ring index against the ring entries).
/// - Ranges spanning two *adjacent* regions are one valid range.
pub trait GuestMemory {
    /// Copy `dst.len()` bytes from guest address `addr` into `dst`.
    fn read(&self, addr: GuestAddress, dst: &mut [u8]) -> Result<(), MemError>;

    /// Copy `src` into guest memory at `addr`.
    fn write(&self, addr: GuestAddress, src: &[u8]) -> Result<(), MemError>;

    /// Check that `[addr, addr + len)` is inside guest memory.
    fn check_range(&self, addr: GuestAddress, len: u64) -> Result<(), MemError>;

    /// Load a little-endian `u16` with acquire ordering (ring indices).
    fn load_u16_acquire(&self, addr: GuestAddress) -> Result<u16, MemError>;

    /// Store a little-endian `u16` with release ordering (ring indices).
    fn store_u16_release(&self, addr: GuestAddress, value: u16) -> Result<(), MemError>;

    /// Read a plain wire structure once into a local copy.
    #[inline]
    fn read_obj<T: FromBytes + IntoBytes>(&self, addr: GuestAddress) -> Result<T, MemError> {
        let mut value = T::new_zeroed();
        self.read(addr, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Write a plain wire structure.
    #[inline]
    fn write_obj<T: IntoBytes + Immutable>(
        &self,
        addr: GuestAddress,
        value: &T,
    ) -> Result<(), MemError> {
        self.write(addr, value.as_bytes())
    }

    /// Load a little-endian `u16` without ordering constraints.
    #[inline]
    fn read_u16(&self, addr: GuestAddress) -> Result<u16, MemError> {
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Load a little-endian `u32`.
    #[inline]
    fn read_u32(&self, addr: GuestAddress) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Load a little-endian `u64`.
    #[inline]
    fn read_u64(&self, addr: GuestAddress) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Store a little-endian `u16` without ordering constraints.
    #[inline]
    fn write_u16(&self, addr: GuestAddress, v: u16) -> Result<(), MemError> {
        self.write(addr, &v.to_le_bytes())
    }

    /// A hint that the cache line holding `addr` will be accessed soon:
    /// an implementation may start loading it. It has no effect on what any
    /// access returns, never fails and never faults, whatever `addr` is.
    /// The default does nothing; [`RegionMemory`]
    /// issues a prefetch instruction on x86_64 and aarch64.
    #[inline]
    fn prefetch(&self, addr: GuestAddress) {
        let _ = addr;
    }

    /// As [`GuestMemory::prefetch`], for a line the device will write (the
    /// CPU may fetch it for ownership). The default does nothing.
    #[inline]
    fn prefetch_for_write(&self, addr: GuestAddress) {
        let _ = addr;
    }

    /// A read whose result only decides what to prefetch: it is never
    /// trusted, validated or kept (the queue reads the same bytes again
    /// when it takes the chain). The default is [`GuestMemory::read`]; a
    /// wrapper that infers the device's actions from its reads (the fuzz
    /// oracle's recording memory) tells these apart.
    #[inline]
    fn read_hint(&self, addr: GuestAddress, dst: &mut [u8]) -> Result<(), MemError> {
        self.read(addr, dst)
    }

    /// A hint for a chain the device will take soon: read (as
    /// [`GuestMemory::read_hint`]: never trusted or kept) the head in the
    /// avail-ring entry at `entry` and, when it is below `size`, the buffer
    /// address in that descriptor of the table at `desc_table` (VIRTIO 1.2
    /// §2.7.5, §2.7.6); then hint the first two lines of that buffer, for
    /// writing when `write`. No effect on what any access returns; never
    /// fails. The default does exactly that through `read_hint`,
    /// [`GuestMemory::prefetch`] and [`GuestMemory::prefetch_for_write`];
    /// [`RegionMemory`] does it with one bounds test per step (the hint
    /// runs before every chain, specs/10-performance.md, seventh round). A
    /// wrapper that forwards `read_hint` to an inner memory should forward
    /// this too, or leave the default.
    #[inline]
    fn hint_chain(&self, entry: GuestAddress, desc_table: GuestAddress, size: u16, write: bool) {
        hint_chain_by_reads(self, entry, desc_table, size, write);
    }

    /// Instrumentation: a queue took the chain with head `head` at avail
    /// position `pos` (free-running, as the avail idx counts), which it read
    /// from the avail-ring entry at `entry`. It touches no memory and cannot
    /// fail; the default does nothing. A wrapper that infers the device's
    /// actions from its accesses (the fuzz oracle's recording memory) takes
    /// this as the pop: a read of an avail entry says which slot was read,
    /// not at which position (a driver that re-posts a head it never
    /// reclaimed has the same slot taken at two positions).
    #[inline]
    fn note_pop(&self, entry: GuestAddress, pos: u16, head: u16) {
        let _ = (entry, pos, head);
    }
}

impl<M: GuestMemory + ?Sized> GuestMemory for &M {
    #[inline]
    fn read(&self, addr: GuestAddress, dst: &mut [u8]) -> Result<(), MemError> {
        (**self).read(addr, dst)
    }
    #[inline]
    fn write(&self, addr: GuestAddress, src: &[u8]) -> Result<(), MemError> {
        (**self).write(addr, src)
    }
    #[inline]
    fn check_range(&self, addr: GuestAddress, len: u64) -> Result<(), MemError> {
        (**self).check_range(addr, len)
    }
    #[inline]
    fn load_u16_acquire(&self, addr: GuestAddress) -> Result<u16, MemError> {
        (**self).load_u16_acquire(addr)
    }
    #[inline]
    fn store_u16_release(&self, addr: GuestAddress, value: u16) -> Result<(), MemError> {
        (**self).store_u16_release(addr, value)
    }
    #[inline]
    fn prefetch(&self, addr: GuestAddress) {
        (**self).prefetch(addr)
    }
    #[inline]
    fn prefetch_for_write(&self, addr: GuestAddress) {
        (**self).prefetch_for_write(addr)
    }
    #[inline]
    fn read_hint(&self, addr: GuestAddress, dst: &mut [u8]) -> Result<(), MemError> {
        (**self).read_hint(addr, dst)
    }
    #[inline]
    fn note_pop(&self, entry: GuestAddress, pos: u16, head: u16) {
        (**self).note_pop(entry, pos, head)
    }
    #[inline]
    fn hint_chain(&self, entry: GuestAddress, desc_table: GuestAddress, size: u16, write: bool) {
        (**self).hint_chain(entry, desc_table, size, write)
    }
}

/// [`GuestMemory::hint_chain`]'s default: the head and the buffer address
/// through [`GuestMemory::read_hint`], the lines through
/// [`GuestMemory::prefetch`] / [`GuestMemory::prefetch_for_write`].
#[inline]
pub(crate) fn hint_chain_by_reads<M: GuestMemory + ?Sized>(
    mem: &M,
    entry: GuestAddress,
    desc_table: GuestAddress,
    size: u16,
    write: bool,
) {
    let Some(a) = hinted_buffer(mem, entry, desc_table, size) else {
        return;
    };
    for line in [a.0, a.0.wrapping_add(64)] {
        if write {
            mem.prefetch_for_write(GuestAddress(line));
        } else {
            mem.prefetch(GuestAddress(line));
        }
    }
}

/// The buffer address in the head descriptor of the chain named by the
/// avail entry at `entry`, read through [`GuestMemory::read_hint`] (a hint:
/// unvalidated beyond `head < size`).
#[inline]
pub(crate) fn hinted_buffer<M: GuestMemory + ?Sized>(
    mem: &M,
    entry: GuestAddress,
    desc_table: GuestAddress,
    size: u16,
) -> Option<GuestAddress> {
    let mut h = [0u8; 2];
    mem.read_hint(entry, &mut h).ok()?;
    let h = u16::from_le_bytes(h);
    if h >= size {
        return None;
    }
    let mut d = [0u8; 8];
    mem.read_hint(desc_table.descriptor(h), &mut d).ok()?;
    // The descriptor's first field: the buffer address.
    Some(GuestAddress(u64::from_le_bytes(d)))
}

/// `[addr, addr + len)` as a checked end address (exclusive).
#[inline]
pub(crate) fn range_end(addr: u64, len: u64) -> Result<u64, MemError> {
    addr.checked_add(len).ok_or(MemError::Overflow)
}
