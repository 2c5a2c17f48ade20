//! Host-mapped guest memory regions: the crate's only `unsafe` memory code.
//!
//! Rules (after rust-vmm vm-memory's volatile-memory rules):
//! - no reference or slice into guest memory is ever created or handed out;
//! - bytes move with `copy_nonoverlapping` into or out of host-owned buffers;
//! - ring indices move with `AtomicU16` loads and stores (acquire/release);
//! - every pointer is derived from a [`Region`] after the whole range was
//!   checked to lie inside it (I-MEM-1, I-MEM-2).
#![allow(unsafe_code)]

use super::{range_end, GuestAddress, GuestMemory, MemError};
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, Ordering};

/// One contiguous range of guest-physical memory mapped into the host.
#[derive(Clone, Copy)]
pub struct Region {
    gpa: u64,
    /// `gpa + len`, exclusive (cannot overflow: checked in `new`).
    end: u64,
    host: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Region` is only a description of memory the creator promised
// (see `Region::new`) stays mapped and may be accessed from any thread; every
// access goes through copies or atomics, never through references, so sharing
// the description across threads adds no aliasing.
unsafe impl Send for Region {}
// SAFETY: as for `Send`: `&Region` only allows the same copy/atomic accesses.
unsafe impl Sync for Region {}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("gpa", &format_args!("{:#x}", self.gpa))
            .field("len", &format_args!("{:#x}", self.len))
            .finish()
    }
}

/// Why a region or region set was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RegionError {
    /// The host pointer was null.
    NullHost,
    /// The region is empty.
    Empty,
    /// `gpa + len` wraps, or `len` exceeds `isize::MAX`.
    TooLarge,
    /// The region overlaps one already added.
    Overlap,
    /// The region set is full (`N` regions).
    Full,
    /// `host` and `gpa` differ modulo 8.
    Misaligned,
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegionError::NullHost => "region host pointer is null",
            RegionError::Empty => "region is empty",
            RegionError::TooLarge => "region wraps the address space or exceeds isize::MAX",
            RegionError::Overlap => "region overlaps another region",
            RegionError::Full => "no room for another region",
            RegionError::Misaligned => "host address and guest address differ modulo 8",
        })
    }
}

impl core::error::Error for RegionError {}

impl Region {
    /// Describe guest-physical `[gpa, gpa + len)` as mapped at host address
    /// `host`.
    ///
    /// # Safety
    /// For as long as the returned `Region` (or any copy of it, or any
    /// [`RegionMemory`] holding it) exists:
    /// - `host .. host + len` must be valid for reads and writes, and mapped;
    /// - nothing in the host may hold a Rust reference (`&`/`&mut`) to those
    ///   bytes: the guest and other threads may change them at any time, so the
    ///   region is only accessed with copies and atomics.
    ///
    /// Concurrent writes by the guest or other threads are allowed: they can
    /// make the *values* read arbitrary, never the accesses unsound.
    ///
    /// `host` and `gpa` must agree modulo 8 (a page-aligned mapping always
    /// does), so that naturally aligned guest ring indices are aligned in the
    /// host for atomic access; otherwise `RegionError::Misaligned`.
    pub unsafe fn new(gpa: u64, host: *mut u8, len: usize) -> Result<Region, RegionError> {
        let host = NonNull::new(host).ok_or(RegionError::NullHost)?;
        if (host.as_ptr().addr() as u64 ^ gpa) & 7 != 0 {
            return Err(RegionError::Misaligned);
        }
        if len == 0 {
            return Err(RegionError::Empty);
        }
        let len64 = u64::try_from(len).map_err(|_| RegionError::TooLarge)?;
        if isize::try_from(len).is_err() || gpa.checked_add(len64).is_none() {
            return Err(RegionError::TooLarge);
        }
        Ok(Region {
            gpa,
            end: gpa.wrapping_add(len64),
            host,
            len,
        })
    }

    /// First guest-physical address of the region.
    pub fn gpa(&self) -> GuestAddress {
        GuestAddress(self.gpa)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty regions cannot be built.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Exclusive end, which cannot overflow (checked in `new`).
    #[inline]
    fn end(&self) -> u64 {
        self.end
    }

    fn contains(&self, addr: u64) -> bool {
        addr >= self.gpa && addr < self.end()
    }

    /// Whether `[addr, end)` lies inside this region.
    #[inline(always)]
    fn holds(&self, addr: u64, end: u64) -> bool {
        addr >= self.gpa && end <= self.end
    }

    /// Host pointer for `addr` inside this region (checked by the caller).
    #[inline]
    fn host_ptr(&self, addr: u64) -> *mut u8 {
        // `gpa <= addr` (checked by the caller), so this does not wrap.
        let off = addr.wrapping_sub(self.gpa) as usize;
        // `off < len <= isize::MAX`, so this stays inside the mapping;
        // `wrapping_add` keeps it free of `unsafe`.
        self.host.as_ptr().wrapping_add(off)
    }
}

/// Guest memory made of up to `N` host-mapped [`Region`]s, kept sorted by
/// guest-physical address. All three shims use it.
#[derive(Clone, Debug, Default)]
pub struct RegionMemory<const N: usize> {
    regions: heapless::Vec<Region, N>,
}

impl<const N: usize> RegionMemory<N> {
    /// An empty region set.
    pub const fn new() -> Self {
        RegionMemory {
            regions: heapless::Vec::new(),
        }
    }

    /// Add a region; refuses overlaps and more than `N` regions.
    pub fn add(&mut self, region: Region) -> Result<(), RegionError> {
        if self
            .regions
            .iter()
            .any(|r| region.gpa < r.end() && r.gpa < region.end())
        {
            return Err(RegionError::Overlap);
        }
        let pos = self
            .regions
            .iter()
            .position(|r| r.gpa > region.gpa)
            .unwrap_or(self.regions.len());
        self.regions
            .insert(pos, region)
            .map_err(|_| RegionError::Full)
    }

    /// The regions, sorted by guest address.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Remove all regions.
    pub fn clear(&mut self) {
        self.regions.clear();
    }

    fn find(&self, addr: u64) -> Option<&Region> {
        self.regions.iter().find(|r| r.contains(addr))
    }

    /// The host pointer of `[addr, addr + len)` when the whole range lies
    /// inside one region (the common case: one pass, no closure, so a
    /// constant-length copy after it inlines to plain loads and stores).
    /// `None` sends the caller to [`RegionMemory::chunks`], which also
    /// handles ranges across adjacent regions and reports the error.
    #[inline]
    fn in_one_region(&self, addr: u64, len: usize) -> Option<*mut u8> {
        let end = addr.checked_add(len as u64)?;
        let inside = |r: &&Region| r.holds(addr, end);
        // Most memories have one region (or the access hits the first):
        // test it before looping.
        let r = match self.regions.first() {
            Some(r) if inside(&r) => r,
            _ => self.regions.iter().find(inside)?,
        };
        Some(r.host_ptr(addr))
    }

    /// Validate `[addr, addr+len)` and call `f(region, chunk_addr, chunk_len,
    /// offset_in_range)` for each piece, in order. Nothing is called unless
    /// the whole range is valid (no partial effect on the host side).
    fn chunks(
        &self,
        addr: u64,
        len: usize,
        mut f: impl FnMut(&Region, u64, usize, usize),
    ) -> Result<(), MemError> {
        let len64 = len as u64;
        let end = range_end(addr, len64)?;
        let err = MemError::OutOfRange { addr, len: len64 };
        // Pass 1: validate (at most N steps: each step enters a new region).
        let mut cur = addr;
        let mut steps = 0usize;
        while cur < end {
            let r = self.find(cur).ok_or(err)?;
            cur = r.end().min(end);
            steps = steps.saturating_add(1);
            if steps > N {
                return Err(err);
            }
        }
        // Pass 2: act.
        let mut cur = addr;
        while cur < end {
            let Some(r) = self.find(cur) else {
                return Err(err);
            };
            let chunk_end = r.end().min(end);
            let chunk = chunk_end.saturating_sub(cur) as usize;
            f(r, cur, chunk, cur.saturating_sub(addr) as usize);
            cur = chunk_end;
        }
        Ok(())
    }

    fn atomic_u16(&self, addr: GuestAddress) -> Result<&AtomicU16, MemError> {
        let a = addr.0;
        let end = range_end(a, 2)?;
        let r = self
            .find(a)
            .ok_or(MemError::OutOfRange { addr: a, len: 2 })?;
        if end > r.end() {
            return Err(MemError::Misaligned(a));
        }
        let p = r.host_ptr(a);
        if p.addr() % 2 != 0 {
            return Err(MemError::Misaligned(a));
        }
        // SAFETY: `p..p+2` lies inside `r` (checked above), which `Region::new`'s
        // contract keeps valid for reads and writes for as long as `self`
        // lives; `p` is 2-aligned (checked above); and the contract forbids
        // non-atomic *references* to the bytes, so creating a shared atomic
        // view is sound even while the guest writes them.
        Ok(unsafe { AtomicU16::from_ptr(p.cast::<u16>()) })
    }
}

impl<const N: usize> GuestMemory for RegionMemory<N> {
    #[inline]
    fn read(&self, addr: GuestAddress, dst: &mut [u8]) -> Result<(), MemError> {
        let dst_ptr = dst.as_mut_ptr();
        if let Some(src) = self.in_one_region(addr.0, dst.len()) {
            // SAFETY: `in_one_region` checked `[addr, addr+len)` is inside one
            // region, valid for reads per `Region::new`; `dst` is a host
            // buffer of `len` bytes that cannot overlap guest memory (the
            // contract forbids references into it).
            unsafe { core::ptr::copy_nonoverlapping(src, dst_ptr, dst.len()) };
            return Ok(());
        }
        self.chunks(addr.0, dst.len(), |r, a, n, off| {
            // SAFETY: `chunks` checked `[a, a+n)` is inside `r`, valid for
            // reads per `Region::new`; `dst[off..off+n]` is inside `dst`
            // because the chunks partition `[addr, addr+dst.len())`; a host
            // buffer the caller borrows mutably cannot overlap guest memory
            // (the contract forbids references into it).
            unsafe { core::ptr::copy_nonoverlapping(r.host_ptr(a), dst_ptr.add(off), n) }
        })
    }

    #[inline]
    fn write(&self, addr: GuestAddress, src: &[u8]) -> Result<(), MemError> {
        let src_ptr = src.as_ptr();
        if let Some(dst) = self.in_one_region(addr.0, src.len()) {
            // SAFETY: as in `read`, with the roles swapped: the range is
            // inside one region, valid for writes; `src` cannot overlap it.
            unsafe { core::ptr::copy_nonoverlapping(src_ptr, dst, src.len()) };
            return Ok(());
        }
        self.chunks(addr.0, src.len(), |r, a, n, off| {
            // SAFETY: as in `read`, with the roles swapped: `[a, a+n)` is
            // inside `r` and valid for writes; `src[off..off+n]` is inside
            // `src`; the two cannot overlap.
            unsafe { core::ptr::copy_nonoverlapping(src_ptr.add(off), r.host_ptr(a), n) }
        })
    }

    #[inline]
    fn check_range(&self, addr: GuestAddress, len: u64) -> Result<(), MemError> {
        let len = usize::try_from(len).map_err(|_| MemError::Overflow)?;
        if self.in_one_region(addr.0, len).is_some() {
            return Ok(());
        }
        self.chunks(addr.0, len, |_, _, _, _| {})
    }

    #[inline]
    fn load_u16_acquire(&self, addr: GuestAddress) -> Result<u16, MemError> {
        Ok(u16::from_le(self.atomic_u16(addr)?.load(Ordering::Acquire)))
    }

    #[inline]
    fn store_u16_release(&self, addr: GuestAddress, value: u16) -> Result<(), MemError> {
        self.atomic_u16(addr)?
            .store(value.to_le(), Ordering::Release);
        Ok(())
    }

    #[inline]
    fn prefetch(&self, addr: GuestAddress) {
        if let Some(p) = self.in_one_region(addr.0, 1) {
            prefetch_line(p, false);
        }
    }

    #[inline]
    fn prefetch_for_write(&self, addr: GuestAddress) {
        if let Some(p) = self.in_one_region(addr.0, 1) {
            prefetch_line(p, true);
        }
    }

    /// The usual case (entry, descriptor and buffer in the first region)
    /// with one bounds test per step and no region search; anything else
    /// takes the default path, out of line.
    #[inline]
    fn hint_chain(&self, entry: GuestAddress, desc_table: GuestAddress, size: u16, write: bool) {
        let Some(r) = self.regions.first() else {
            return self.hint_chain_slow(entry, desc_table, size, write);
        };
        match r.chain_hint(entry, desc_table, size) {
            ChainHint::Buffer(a) => {
                let p = r.host_ptr(a.0);
                prefetch_line(p, write);
                prefetch_line(p.wrapping_add(64), write);
            }
            ChainHint::Nothing => {}
            ChainHint::Elsewhere => self.hint_chain_slow(entry, desc_table, size, write),
        }
    }
}

/// What the one-region path of [`RegionMemory`]'s
/// [`GuestMemory::hint_chain`] decides (I-MEM-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainHint {
    /// Hint the buffer at this guest address, which lies in the first
    /// region (its second line may lie past the region: a prefetch of it
    /// is still harmless).
    Buffer(GuestAddress),
    /// No buffer to hint: the head is out of range.
    Nothing,
    /// Something lies outside the first region: the default path
    /// ([`GuestMemory::read_hint`] and [`GuestMemory::prefetch`]) decides.
    Elsewhere,
}

impl Region {
    /// `L` bytes at `addr` when they lie inside this region.
    #[inline(always)]
    fn load<const L: usize>(&self, addr: u64) -> Option<[u8; L]> {
        if !self.holds(addr, addr.checked_add(L as u64)?) {
            return None;
        }
        let mut out = [0u8; L];
        // SAFETY: `[addr, addr + L)` lies inside this region (checked
        // above), valid for reads per `Region::new`; `out` is a local array
        // of `L` bytes, which cannot overlap guest memory.
        unsafe { core::ptr::copy_nonoverlapping(self.host_ptr(addr), out.as_mut_ptr(), L) };
        Some(out)
    }

    /// [`GuestMemory::hint_chain`] inside this region alone.
    #[inline(always)]
    fn chain_hint(&self, entry: GuestAddress, desc_table: GuestAddress, size: u16) -> ChainHint {
        let Some(h) = self.load::<2>(entry.0) else {
            return ChainHint::Elsewhere;
        };
        let h = u16::from_le_bytes(h);
        if h >= size {
            return ChainHint::Nothing;
        }
        let Some(a) = self.load::<8>(desc_table.descriptor(h).0) else {
            return ChainHint::Elsewhere;
        };
        let a = u64::from_le_bytes(a);
        if self.contains(a) {
            ChainHint::Buffer(GuestAddress(a))
        } else {
            ChainHint::Elsewhere
        }
    }
}

impl<const N: usize> RegionMemory<N> {
    /// The decision [`GuestMemory::hint_chain`] takes without the default
    /// path, for an oracle to compare with the default path's reads (the
    /// fuzz targets do, under AddressSanitizer). Test utility.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn chain_hint(
        &self,
        entry: GuestAddress,
        desc_table: GuestAddress,
        size: u16,
    ) -> ChainHint {
        self.regions.first().map_or(ChainHint::Elsewhere, |r| {
            r.chain_hint(entry, desc_table, size)
        })
    }

    /// [`GuestMemory::hint_chain`] across regions: the default path.
    #[inline(never)]
    fn hint_chain_slow(
        &self,
        entry: GuestAddress,
        desc_table: GuestAddress,
        size: u16,
        write: bool,
    ) {
        crate::mem::hint_chain_by_reads(self, entry, desc_table, size, write);
    }
}

/// Ask the CPU to start loading the cache line at `p`, for writing when
/// `write` (a hint: no architectural effect, never faults).
#[inline(always)]
fn prefetch_line(p: *const u8, write: bool) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        if write {
            // SAFETY: `prefetchw` only hints the cache (fetch for ownership);
            // it dereferences nothing, cannot fault and changes no
            // architectural state, whatever the address. CPUs without it
            // execute the opcode (0F 0D /1) as a NOP.
            unsafe {
                core::arch::asm!(
                    "prefetchw [{p}]",
                    p = in(reg) p,
                    options(nostack, preserves_flags, readonly)
                )
            };
        } else {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: `prefetcht0` only hints the cache; as above.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
        }
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    {
        // SAFETY: `prfm` is a hint: it cannot fault, writes no register or
        // memory and changes no flags, whatever the address.
        unsafe {
            if write {
                core::arch::asm!(
                    "prfm pstl1keep, [{p}]",
                    p = in(reg) p,
                    options(nostack, preserves_flags, readonly)
                )
            } else {
                core::arch::asm!(
                    "prfm pldl1keep, [{p}]",
                    p = in(reg) p,
                    options(nostack, preserves_flags, readonly)
                )
            }
        };
    }
    #[cfg(not(all(any(target_arch = "x86_64", target_arch = "aarch64"), not(miri))))]
    let _ = (p, write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    /// Bytes of an 8-aligned test buffer (host memory is page-aligned in use;
    /// Miri hands out byte buffers at any alignment).
    fn bytes(words: &[u64]) -> std::vec::Vec<u8> {
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    fn mem2(a: &mut [u64], b: &mut [u64], gap: u64) -> RegionMemory<4> {
        let mut m = RegionMemory::<4>::new();
        let la = a.len() as u64 * 8;
        // SAFETY: test buffers outlive the memory and are not otherwise referenced
        // while it is used.
        unsafe {
            m.add(Region::new(0x1000, a.as_mut_ptr().cast(), a.len() * 8).unwrap())
                .unwrap();
            m.add(Region::new(0x1000 + la + gap, b.as_mut_ptr().cast(), b.len() * 8).unwrap())
                .unwrap();
        }
        m
    }

    /// I-MEM-1: a range ending on the last byte is accepted, one byte more is not.
    #[test]
    fn range_ending_on_last_byte_is_accepted_one_more_is_refused() {
        let mut a = vec![0u64; 8];
        let mut b = vec![0u64; 8];
        let m = mem2(&mut a, &mut b, 0x100);
        assert!(m.check_range(GuestAddress(0x1000), 64).is_ok());
        assert!(m.check_range(GuestAddress(0x1000 + 60), 4).is_ok());
        assert_eq!(
            m.check_range(GuestAddress(0x1000 + 60), 5),
            Err(MemError::OutOfRange {
                addr: 0x103c,
                len: 5
            })
        );
    }

    /// I-MEM-2: a range across a hole is refused and has no partial effect.
    #[test]
    fn range_across_a_hole_is_refused_without_partial_write() {
        let mut a = vec![0u64; 8];
        let mut b = vec![0u64; 8];
        {
            let m = mem2(&mut a, &mut b, 0x100);
            assert!(m.write(GuestAddress(0x1000 + 60), &[1u8; 8]).is_err());
        }
        assert!(bytes(&a).iter().all(|&x| x == 0));
    }

    /// I-MEM-2: adjacent regions form one valid range.
    #[test]
    fn range_across_adjacent_regions_is_one_range() {
        let mut a = vec![0u64; 8];
        let mut b = vec![0u64; 8];
        {
            let m = mem2(&mut a, &mut b, 0);
            let src: std::vec::Vec<u8> = (0..16u8).collect();
            m.write(GuestAddress(0x1000 + 56), &src).unwrap();
            let mut back = [0u8; 16];
            m.read(GuestAddress(0x1000 + 56), &mut back).unwrap();
            assert_eq!(&back[..], &src[..]);
        }
        assert_eq!(&bytes(&a)[56..], &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(&bytes(&b)[..8], &[8, 9, 10, 11, 12, 13, 14, 15]);
    }

    /// I-MEM-6: the one-region chain hint finds the buffer the default
    /// path reads (avail entry, then the head descriptor's address), and
    /// for garbage (a head out of range, an entry, descriptor or buffer
    /// outside the region) hints nothing or leaves it to the default path,
    /// without reading outside the region.
    #[test]
    fn chain_hint_finds_the_buffer_the_default_path_reads() {
        // Region 0x1000..0x1200: an avail entry at 0x1008, a descriptor
        // table of 4 at 0x1100.
        let mut a = vec![0u64; 64];
        let mut b = vec![0u64; 8];
        let m = mem2(&mut a, &mut b, 0x1000);
        let r = &m.regions()[0];
        let entry = GuestAddress(0x1008);
        let table = GuestAddress(0x1100);
        let set = |head: u16, buf: u64| {
            m.write(entry, &head.to_le_bytes()).unwrap();
            m.write(
                GuestAddress(0x1100 + u64::from(head) * 16),
                &buf.to_le_bytes(),
            )
            .unwrap();
        };
        for (head, buf) in [(0u16, 0x1040u64), (3, 0x11ff), (2, 0x1000)] {
            set(head, buf);
            let want = crate::mem::hinted_buffer(&m, entry, table, 4).unwrap();
            assert_eq!(want, GuestAddress(buf));
            assert_eq!(
                r.chain_hint(entry, table, 4),
                ChainHint::Buffer(GuestAddress(buf))
            );
            m.hint_chain(entry, table, 4, true);
        }
        // Head out of range: nothing, by either path.
        set(3, 0x1040);
        assert_eq!(r.chain_hint(entry, table, 3), ChainHint::Nothing);
        assert_eq!(crate::mem::hinted_buffer(&m, entry, table, 3), None);
        // A buffer in the other region, or in no region at all.
        for buf in [0x2200u64, 0x1200, u64::MAX] {
            set(1, buf);
            assert_eq!(r.chain_hint(entry, table, 4), ChainHint::Elsewhere);
            m.hint_chain(entry, table, 4, false);
        }
        // A descriptor past the region's end (head 3 of a table at its
        // last 16 bytes but 8), an entry straddling the end, an entry in
        // the other region.
        set(0, 0x1040);
        assert_eq!(
            r.chain_hint(entry, GuestAddress(0x11f8), 4),
            ChainHint::Elsewhere
        );
        assert_eq!(
            r.chain_hint(GuestAddress(0x11ff), table, 4),
            ChainHint::Elsewhere
        );
        assert_eq!(
            r.chain_hint(GuestAddress(0x2200), table, 4),
            ChainHint::Elsewhere
        );
        for e in [0x11ffu64, 0x2200, u64::MAX, u64::MAX - 1] {
            m.hint_chain(GuestAddress(e), table, 4, true);
            m.hint_chain(GuestAddress(e), GuestAddress(u64::MAX - 8), u16::MAX, false);
        }
    }

    /// I-MEM-3: wrapping ranges are refused.
    #[test]
    fn wrapping_range_is_overflow() {
        let mut a = vec![0u64; 8];
        let mut b = vec![0u64; 8];
        let m = mem2(&mut a, &mut b, 0);
        assert_eq!(
            m.check_range(GuestAddress(u64::MAX - 15), 32),
            Err(MemError::Overflow)
        );
    }

    #[test]
    fn ring_index_atomics_round_trip_and_refuse_misaligned() {
        let mut a = vec![0u64; 8];
        let mut b = vec![0u64; 8];
        let m = mem2(&mut a, &mut b, 0);
        m.store_u16_release(GuestAddress(0x1002), 0xBEEF).unwrap();
        assert_eq!(m.load_u16_acquire(GuestAddress(0x1002)).unwrap(), 0xBEEF);
        assert_eq!(m.read_u16(GuestAddress(0x1002)).unwrap(), 0xBEEF);
        assert!(matches!(
            m.load_u16_acquire(GuestAddress(0x1003)),
            Err(MemError::Misaligned(_)) | Ok(_)
        ));
        assert!(m.load_u16_acquire(GuestAddress(0x5000)).is_err());
    }

    #[test]
    fn regions_refuse_overlap_null_empty_and_wrap() {
        let mut a = vec![0u64; 8];
        let mut m = RegionMemory::<2>::new();
        // SAFETY: the buffer outlives `m`.
        unsafe {
            m.add(Region::new(0x1000, a.as_mut_ptr().cast(), 64).unwrap())
                .unwrap();
            assert_eq!(
                m.add(Region::new(0x1020, a.as_mut_ptr().cast(), 64).unwrap()),
                Err(RegionError::Overlap)
            );
            assert_eq!(
                Region::new(0, core::ptr::null_mut(), 1).unwrap_err(),
                RegionError::NullHost
            );
            assert_eq!(
                Region::new(0, a.as_mut_ptr().cast(), 0).unwrap_err(),
                RegionError::Empty
            );
            assert_eq!(
                Region::new(u64::MAX - 7, a.as_mut_ptr().cast(), 64).unwrap_err(),
                RegionError::TooLarge
            );
            assert_eq!(
                Region::new(0x1001, a.as_mut_ptr().cast(), 8).unwrap_err(),
                RegionError::Misaligned
            );
        }
    }
}
