//! Guest memory over physical RAM ranges, through the core's
//! [`RegionMemory`].
//!
//! A bare-metal device reaches the driver's RAM either at the same address
//! (MMU off, or an identity map: [`RamRange::identity`]) or at a fixed offset
//! (a hypervisor whose stage-2 map places guest-physical `gpa` at host
//! address `host`, or a device whose view of shared RAM is offset:
//! [`RamRange::offset`]). [`guest_memory`] turns a list of such ranges into a
//! [`RegionMemory`], one [`Region`] per range. Ranges the driver does not own
//! are simply left out, so a descriptor pointing there fails the core's range
//! check instead of reaching the device's own memory.
//!
//! The core accesses these bytes only with copies and atomics, never through
//! references (see `Region::new`); see `specs/06-baremetal.md` §2 for the
//! memory-attribute requirements on real hardware.

use core::fmt;
use core::ptr::with_exposed_provenance_mut;

use virtnet::mem::{Region, RegionError, RegionMemory};

/// One contiguous range of guest-physical memory and the address at which
/// the device side reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RamRange {
    gpa: u64,
    host: usize,
    len: usize,
}

impl RamRange {
    /// An identity-mapped range: guest-physical `[base, base + len)` is at
    /// the same address for the device (MMU off, or an identity map).
    #[must_use]
    pub const fn identity(base: usize, len: usize) -> Self {
        Self {
            // usize is at most 64 bits on every target: lossless.
            gpa: base as u64,
            host: base,
            len,
        }
    }

    /// An offset-mapped range: guest-physical `[gpa, gpa + len)` is at
    /// `[host, host + len)` for the device (e.g. the stage-2 output address
    /// of a block the guest owns).
    #[must_use]
    pub const fn offset(gpa: u64, len: usize, host: usize) -> Self {
        Self { gpa, host, len }
    }

    /// First guest-physical address.
    #[must_use]
    pub const fn gpa(&self) -> u64 {
        self.gpa
    }

    /// The device-side address of [`RamRange::gpa`].
    #[must_use]
    pub const fn host(&self) -> usize {
        self.host
    }

    /// Length in bytes.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty (refused by [`guest_memory`]).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Why [`guest_memory`] refused a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MapError {
    /// Index of the refused range in the list.
    pub index: usize,
    /// What the core said: a null host address, an empty or wrapping range,
    /// an overlap with an earlier range, or more than `N` ranges.
    pub error: RegionError,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RAM range {}: {}", self.index, self.error)
    }
}

impl core::error::Error for MapError {}

/// Builds the device's view of guest memory from `ranges` (at most `N`).
///
/// # Safety
/// For every range, for as long as the returned memory (or a clone of it)
/// is used:
/// * `[host, host + len)` is RAM the device side may read and write at those
///   addresses (mapped, if the MMU is on, as Normal memory shared with the
///   driver: specs/06-baremetal.md §2), and it stays so: it is not unmapped,
///   and not reused for anything but the driver's memory;
/// * the device side holds no Rust reference (`&`/`&mut`) to those bytes:
///   the driver changes them at any time; the core only copies and uses
///   atomics (the contract of `virtnet::mem::Region::new`).
///
/// # Errors
/// [`MapError`] naming the first range the core refused (null host address,
/// empty, wrapping, overlapping an earlier one, or beyond `N`).
pub unsafe fn guest_memory<const N: usize>(
    ranges: &[RamRange],
) -> Result<RegionMemory<N>, MapError> {
    let mut mem = RegionMemory::new();
    for (index, r) in ranges.iter().enumerate() {
        let host = with_exposed_provenance_mut::<u8>(r.host);
        // SAFETY: the caller's contract above is `Region::new`'s contract for
        // this range.
        let region = unsafe { Region::new(r.gpa, host, r.len) }
            .map_err(|error| MapError { index, error })?;
        mem.add(region).map_err(|error| MapError { index, error })?;
    }
    Ok(mem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use virtnet::mem::{GuestAddress, GuestMemory, MemError};

    #[test]
    fn identity_range_reaches_the_same_address() {
        let mut buf = vec![0u8; 4096];
        let base = buf.as_mut_ptr().expose_provenance();
        // SAFETY: `buf` outlives `mem` and is only accessed through it while
        // `mem` is used.
        let mem: RegionMemory<1> =
            unsafe { guest_memory(&[RamRange::identity(base, buf.len())]) }.unwrap();
        mem.write(GuestAddress(base as u64 + 16), &[1, 2, 3])
            .unwrap();
        let mut back = [0u8; 3];
        mem.read(GuestAddress(base as u64 + 16), &mut back).unwrap();
        assert_eq!(back, [1, 2, 3]);
        drop(mem);
        assert_eq!(&buf[16..19], &[1, 2, 3]);
    }

    #[test]
    fn offset_ranges_translate_and_holes_are_refused() {
        let mut a = vec![0u8; 8192];
        let mut b = vec![0u8; 4096];
        let (ha, hb) = (
            a.as_mut_ptr().expose_provenance(),
            b.as_mut_ptr().expose_provenance(),
        );
        // Guest RAM at 0x4000_0000 (8 KiB) and 0x8000_0000 (4 KiB), with a
        // hole between them.
        // SAFETY: both buffers outlive `mem`.
        let mem: RegionMemory<2> = unsafe {
            guest_memory(&[
                RamRange::offset(0x4000_0000, a.len(), ha),
                RamRange::offset(0x8000_0000, b.len(), hb),
            ])
        }
        .unwrap();
        mem.write(GuestAddress(0x4000_1fff), &[0xaa]).unwrap();
        mem.write(GuestAddress(0x8000_0000), &[0xbb]).unwrap();
        assert!(matches!(
            mem.write(GuestAddress(0x4000_2000), &[0]),
            Err(MemError::OutOfRange {
                addr: 0x4000_2000,
                len: 1
            })
        ));
        assert!(mem.read(GuestAddress(0x4000_1fff), &mut [0u8; 2]).is_err());
        assert!(mem.check_range(GuestAddress(0x6000_0000), 1).is_err());
        drop(mem);
        assert_eq!(a[0x1fff], 0xaa);
        assert_eq!(b[0], 0xbb);
    }

    #[test]
    fn refused_ranges_are_named() {
        let mut a = vec![0u64; 512];
        let h = a.as_mut_ptr().cast::<u8>().expose_provenance();
        // SAFETY: none of these succeed; `a` outlives the calls anyway.
        unsafe {
            let e = guest_memory::<2>(&[RamRange::offset(0, 4096, h), RamRange::offset(8, 16, h)])
                .unwrap_err();
            assert_eq!((e.index, e.error), (1, RegionError::Overlap));
            let e = guest_memory::<1>(&[RamRange::offset(0, 16, h), RamRange::offset(64, 16, h)])
                .unwrap_err();
            assert_eq!((e.index, e.error), (1, RegionError::Full));
            let e = guest_memory::<1>(&[RamRange::offset(0, 0, h)]).unwrap_err();
            assert_eq!(e.error, RegionError::Empty);
            let e = guest_memory::<1>(&[RamRange::identity(0, 16)]).unwrap_err();
            assert_eq!(e.error, RegionError::NullHost);
            let e = guest_memory::<1>(&[RamRange::offset(u64::MAX - 7, 16, h)]).unwrap_err();
            assert_eq!(e.error, RegionError::TooLarge);
            let e = guest_memory::<1>(&[RamRange::offset(1, 16, h)]).unwrap_err();
            assert_eq!(e.error, RegionError::Misaligned);
        }
    }
}
