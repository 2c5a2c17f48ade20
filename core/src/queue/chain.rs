//! Descriptor chains: the walk (VIRTIO 1.2 §2.7.5, §2.7.5.3) and access to the
//! segments it produced.
//!
//! The walk reads each descriptor exactly once into a local copy and keeps
//! only validated segments, so the guest cannot change what was checked
//! (CVE-2020-14375). It is bounded: at most `size` descriptors of the main
//! table plus at most the entries of one indirect table (I-QUEUE-4).

use crate::mem::{GuestAddress, GuestMemory, MemError};
use crate::wire::{DescFlags, Descriptor};
use core::fmt;

/// Default number of segments a chain may have: more than any Linux or
/// DPDK driver uses for one packet (MAX_SKB_FRAGS + 2 = 19).
pub const DEFAULT_MAX_SEGMENTS: usize = 64;

/// One validated buffer of a chain: entirely inside guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Segment {
    /// Guest-physical address.
    pub addr: GuestAddress,
    /// Length (non-zero).
    pub len: u32,
    /// Device-writable (else device-readable).
    pub writable: bool,
}

/// Why a chain was refused. The chain's head is returned with len 0; the
/// queue keeps working (I-QUEUE-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ChainError {
    /// `next` at or beyond the table it indexes.
    NextOutOfRange(u16),
    /// More descriptors than the table holds: the chain loops.
    Loop,
    /// A buffer's `addr + len` wraps the address space.
    AddrOverflow,
    /// A buffer or indirect table is not inside guest memory.
    OutsideMemory(MemError),
    /// The sum of the buffer lengths exceeds `u32::MAX` (§2.7.5.2).
    TotalTooLarge,
    /// A device-readable buffer after a device-writable one (§2.7.4.2).
    ReadableAfterWritable,
    /// Flag bits other than NEXT, WRITE, INDIRECT.
    UnknownFlags(u16),
    /// INDIRECT without VIRTIO_F_RING_INDIRECT_DESC negotiated.
    IndirectNotNegotiated,
    /// INDIRECT and NEXT on the same descriptor (§2.7.5.3.1).
    IndirectWithNext,
    /// INDIRECT inside an indirect table.
    NestedIndirect,
    /// An indirect table of length 0, not a multiple of 16, or with more
    /// than 65535 entries.
    BadIndirectLen(u32),
    /// More non-empty buffers than the chain can hold.
    TooManySegments,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainError::NextOutOfRange(n) => write!(f, "next index {n} out of range"),
            ChainError::Loop => f.write_str("descriptor chain loops"),
            ChainError::AddrOverflow => f.write_str("buffer address + length wraps"),
            ChainError::OutsideMemory(e) => write!(f, "buffer outside guest memory: {e}"),
            ChainError::TotalTooLarge => f.write_str("total chain length exceeds 4 GiB"),
            ChainError::ReadableAfterWritable => {
                f.write_str("readable buffer after a writable one")
            }
            ChainError::UnknownFlags(v) => write!(f, "unknown descriptor flags {v:#x}"),
            ChainError::IndirectNotNegotiated => f.write_str("indirect descriptor not negotiated"),
            ChainError::IndirectWithNext => f.write_str("INDIRECT together with NEXT"),
            ChainError::NestedIndirect => f.write_str("nested indirect table"),
            ChainError::BadIndirectLen(l) => write!(f, "bad indirect table length {l}"),
            ChainError::TooManySegments => f.write_str("too many buffers in one chain"),
        }
    }
}

impl core::error::Error for ChainError {}

/// The validated segments of one chain, readable ones first. Allocation-free:
/// holds at most `S` segments (zero-length buffers are skipped).
#[derive(Clone, Debug, Default)]
pub struct DescriptorChain<const S: usize = DEFAULT_MAX_SEGMENTS> {
    segments: heapless::Vec<Segment, S>,
    first_writable: usize,
    readable_len: u32,
    writable_len: u32,
    walked: u32,
}

impl<const S: usize> DescriptorChain<S> {
    /// An empty chain.
    pub const fn new() -> Self {
        DescriptorChain {
            segments: heapless::Vec::new(),
            first_writable: 0,
            readable_len: 0,
            writable_len: 0,
            walked: 0,
        }
    }

    /// All segments, readable ones first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The device-readable segments.
    pub fn readable(&self) -> &[Segment] {
        self.segments.get(..self.first_writable).unwrap_or(&[])
    }

    /// The device-writable segments.
    pub fn writable(&self) -> &[Segment] {
        self.segments.get(self.first_writable..).unwrap_or(&[])
    }

    /// Total bytes the device may read.
    pub fn readable_len(&self) -> u32 {
        self.readable_len
    }

    /// Total bytes the device may write.
    pub fn writable_len(&self) -> u32 {
        self.writable_len
    }

    /// Descriptors read during the walk (including empty ones and the
    /// indirect-table descriptor).
    pub fn descriptors_walked(&self) -> u32 {
        self.walked
    }

    /// Read `L` device-readable bytes at `offset` into `out`: whether all
    /// `L` were read (the readable part may be shorter). A constant length
    /// inside the first segment compiles to plain loads, straight into the
    /// caller's array (no copy through a returned value: the TX header is
    /// tested as soon as its bytes land).
    #[inline]
    pub fn read_array<M: GuestMemory + ?Sized, const L: usize>(
        &self,
        mem: &M,
        offset: usize,
        out: &mut [u8; L],
    ) -> bool {
        if let Some(addr) = self.inside_first(false, offset, L) {
            return mem.read(addr, out).is_ok();
        }
        matches!(self.read_at(mem, offset, out), Ok(n) if n == L)
    }

    /// Write all `L` bytes of `src` into the device-writable part at
    /// `offset`: whether they all fit (nothing is written otherwise, unless
    /// the range spans segments and guest memory fails part-way). A
    /// constant length inside the first writable segment compiles to plain
    /// stores (the RX header).
    #[inline]
    pub fn write_array<M: GuestMemory + ?Sized, const L: usize>(
        &self,
        mem: &M,
        offset: usize,
        src: &[u8; L],
    ) -> bool {
        if let Some(addr) = self.inside_first(true, offset, L) {
            return mem.write(addr, src).is_ok();
        }
        if offset.saturating_add(L) > self.writable_len as usize {
            return false;
        }
        matches!(self.write_at(mem, offset, src), Ok(n) if n == L)
    }

    /// The guest address of `[offset, offset + len)` when that range lies
    /// inside the first readable (`writable == false`) or first writable
    /// segment.
    #[inline]
    fn inside_first(&self, writable: bool, offset: usize, len: usize) -> Option<GuestAddress> {
        let i = if writable { self.first_writable } else { 0 };
        let s = self.segments.get(i)?;
        if s.writable != writable || offset.checked_add(len)? > s.len as usize {
            return None;
        }
        // Cannot overflow: the walk checked `addr + len` for the segment.
        s.addr.checked_add(offset as u64)
    }

    fn clear(&mut self) {
        self.segments.clear();
        self.first_writable = 0;
        self.readable_len = 0;
        self.writable_len = 0;
        self.walked = 0;
    }

    /// Copy up to `dst.len()` device-readable bytes starting `offset` bytes
    /// into the chain. Returns the number of bytes copied (short at the end
    /// of the readable part).
    #[inline(always)]
    pub fn read_at<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        offset: usize,
        dst: &mut [u8],
    ) -> Result<usize, MemError> {
        // Fast path: the range lies inside the first readable segment (a
        // one-descriptor chain, or the header of any chain).
        if let Some(addr) = self.inside_first(false, offset, dst.len()) {
            mem.read(addr, dst)?;
            return Ok(dst.len());
        }
        self.read_segments(mem, offset, dst)
    }

    /// [`DescriptorChain::read_at`] across segments.
    #[inline(never)]
    fn read_segments<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        offset: usize,
        dst: &mut [u8],
    ) -> Result<usize, MemError> {
        if let Some(addr) = inside_one(self.readable(), offset, dst.len()) {
            mem.read(addr, dst)?;
            return Ok(dst.len());
        }
        copy_segments(self.readable(), offset, dst.len(), |addr, pos, n| {
            let d = dst.get_mut(pos..pos.saturating_add(n)).unwrap_or(&mut []);
            mem.read(addr, d)
        })
    }

    /// Copy up to `src.len()` bytes into the device-writable part, starting
    /// `offset` bytes into it. Returns the number of bytes written. Only
    /// ranges the driver marked writable are ever written (I-QUEUE-7).
    #[inline(always)]
    pub fn write_at<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        offset: usize,
        src: &[u8],
    ) -> Result<usize, MemError> {
        // Fast path: the range lies inside the first writable segment.
        if let Some(addr) = self.inside_first(true, offset, src.len()) {
            mem.write(addr, src)?;
            return Ok(src.len());
        }
        self.write_segments(mem, offset, src)
    }

    /// [`DescriptorChain::write_at`] across segments.
    #[inline(never)]
    fn write_segments<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        offset: usize,
        src: &[u8],
    ) -> Result<usize, MemError> {
        if let Some(addr) = inside_one(self.writable(), offset, src.len()) {
            mem.write(addr, src)?;
            return Ok(src.len());
        }
        copy_segments(self.writable(), offset, src.len(), |addr, pos, n| {
            let s = src.get(pos..pos.saturating_add(n)).unwrap_or(&[]);
            mem.write(addr, s)
        })
    }

    /// Validate the only descriptor of a chain (the chain is empty) and
    /// keep it unless its length is zero: [`DescriptorChain::push`] without
    /// the checks an empty chain passes anyway.
    #[inline(always)]
    fn push_only<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        d: &Descriptor,
        writable: bool,
    ) -> Result<(), ChainError> {
        match d.len.get() {
            0 => Ok(()),
            len => self.keep(mem, d, len, writable),
        }
    }

    /// Validate one descriptor and append it (zero-length buffers are
    /// counted against the walk but not kept).
    #[inline]
    fn push<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        d: &Descriptor,
        flags: DescFlags,
    ) -> Result<(), ChainError> {
        let len = d.len.get();
        let writable = flags.contains(DescFlags::WRITE);
        if !writable && self.segments.len() > self.first_writable {
            return Err(ChainError::ReadableAfterWritable);
        }
        // One sum in 64 bits: three `u32`s cannot overflow it.
        let total = u64::from(self.readable_len)
            .wrapping_add(u64::from(self.writable_len))
            .wrapping_add(u64::from(len));
        if total > u64::from(u32::MAX) {
            return Err(ChainError::TotalTooLarge);
        }
        if len == 0 {
            return Ok(());
        }
        self.keep(mem, d, len, writable)
    }

    /// Check a non-empty buffer (`addr + len` must not wrap and lie in
    /// guest memory) and append it as a segment.
    #[inline(always)]
    fn keep<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        d: &Descriptor,
        len: u32,
        writable: bool,
    ) -> Result<(), ChainError> {
        let addr = GuestAddress(d.addr.get());
        if addr.checked_add(u64::from(len)).is_none() {
            return Err(ChainError::AddrOverflow);
        }
        mem.check_range(addr, u64::from(len))
            .map_err(ChainError::OutsideMemory)?;
        self.segments
            .push(Segment {
                addr,
                len,
                writable,
            })
            .map_err(|_| ChainError::TooManySegments)?;
        // Cannot wrap: `push` checked the chain's total fits `u32`, and a
        // lone descriptor's length is a `u32` added to zero.
        if writable {
            self.writable_len = self.writable_len.wrapping_add(len);
        } else {
            self.readable_len = self.readable_len.wrapping_add(len);
            self.first_writable = self.segments.len();
        }
        Ok(())
    }
}

/// The guest address of `[offset, offset + len)` when that range lies inside
/// one of `segs` (counting from the first): a split header and frame
/// (header in one descriptor, frame in the next) is copied in one piece,
/// without [`copy_segments`]' loop.
#[inline]
fn inside_one(segs: &[Segment], offset: usize, len: usize) -> Option<GuestAddress> {
    let mut skip = offset;
    for s in segs {
        let slen = s.len as usize;
        if skip < slen {
            if len > slen.saturating_sub(skip) {
                return None;
            }
            // Cannot overflow: the walk checked `addr + len` for the segment.
            return s.addr.checked_add(skip as u64);
        }
        skip = skip.saturating_sub(slen);
    }
    None
}

/// Walk `segs` from byte `offset`, calling `f(addr, pos_in_buf, n)` for each
/// piece of at most `want` bytes in total.
#[inline]
fn copy_segments(
    segs: &[Segment],
    offset: usize,
    want: usize,
    mut f: impl FnMut(GuestAddress, usize, usize) -> Result<(), MemError>,
) -> Result<usize, MemError> {
    let mut skip = offset;
    let mut done = 0usize;
    for s in segs {
        if done >= want {
            break;
        }
        let slen = s.len as usize;
        if skip >= slen {
            skip = skip.saturating_sub(slen);
            continue;
        }
        let n = slen.saturating_sub(skip).min(want.saturating_sub(done));
        let addr = s.addr.offset(skip as u64)?;
        f(addr, done, n)?;
        done = done.saturating_add(n);
        skip = 0;
    }
    Ok(done)
}

/// Walk the chain starting at `head` of a table of `size` descriptors at
/// `table`, into `chain`. `Err(Ok(chain_error))` is a malformed chain,
/// `Err(Err(mem))` means the main table itself could not be read.
#[inline]
pub(crate) fn walk<M: GuestMemory + ?Sized, const S: usize>(
    mem: &M,
    table: GuestAddress,
    size: u16,
    head: u16,
    indirect_ok: bool,
    chain: &mut DescriptorChain<S>,
) -> Result<(), Result<ChainError, MemError>> {
    chain.clear();
    // `head < size` and the table lies inside guest memory (validated when
    // the queue was built), so these addresses cannot wrap.
    let mut d: Descriptor = mem.read_obj(table.descriptor(head)).map_err(Err)?;
    chain.walked = 1;
    // One descriptor without NEXT or INDIRECT, the usual chain of a driver
    // that does not split the header (Linux, DPDK): kept directly.
    let raw = d.flags.get();
    if raw & !DescFlags::WRITE.bits() == 0 {
        return chain.push_only(mem, &d, raw != 0).map_err(Ok);
    }
    // Descriptors read so far count against the table's size: a chain
    // that visits more than `size` loops.
    let mut ttl = size.saturating_sub(1);
    loop {
        let flags = DescFlags::from_bits(d.flags.get())
            .ok_or(Ok(ChainError::UnknownFlags(d.flags.get())))?;
        if flags.contains(DescFlags::INDIRECT) {
            if !indirect_ok {
                return Err(Ok(ChainError::IndirectNotNegotiated));
            }
            if flags.contains(DescFlags::NEXT) {
                return Err(Ok(ChainError::IndirectWithNext));
            }
            // The table descriptor's WRITE flag is ignored (§2.7.5.3.2).
            return walk_indirect(mem, &d, chain).map_err(Ok);
        }
        chain.push(mem, &d, flags).map_err(Ok)?;
        if !flags.contains(DescFlags::NEXT) {
            return Ok(());
        }
        let idx = d.next.get();
        if idx >= size {
            return Err(Ok(ChainError::NextOutOfRange(idx)));
        }
        if ttl == 0 {
            return Err(Ok(ChainError::Loop));
        }
        ttl = ttl.saturating_sub(1);
        d = mem.read_obj(table.descriptor(idx)).map_err(Err)?;
        // At most `size` + 65535 descriptors: cannot wrap a `u32`.
        chain.walked = chain.walked.wrapping_add(1);
    }
}

fn walk_indirect<M: GuestMemory + ?Sized, const S: usize>(
    mem: &M,
    table_desc: &Descriptor,
    chain: &mut DescriptorChain<S>,
) -> Result<(), ChainError> {
    let len = table_desc.len.get();
    if len == 0 || len % 16 != 0 {
        return Err(ChainError::BadIndirectLen(len));
    }
    let count = u16::try_from(len / 16).map_err(|_| ChainError::BadIndirectLen(len))?;
    let table = GuestAddress(table_desc.addr.get());
    if table.checked_add(u64::from(len)).is_none() {
        return Err(ChainError::AddrOverflow);
    }
    mem.check_range(table, u64::from(len))
        .map_err(ChainError::OutsideMemory)?;
    let mut idx: u16 = 0;
    let mut ttl = count;
    loop {
        if ttl == 0 {
            return Err(ChainError::Loop);
        }
        ttl = ttl.saturating_sub(1);
        let at = table
            .offset(u64::from(idx).saturating_mul(Descriptor::SIZE))
            .map_err(ChainError::OutsideMemory)?;
        let d: Descriptor = mem.read_obj(at).map_err(ChainError::OutsideMemory)?;
        // At most `size` + 65535 descriptors: cannot wrap a `u32`.
        chain.walked = chain.walked.wrapping_add(1);
        let flags =
            DescFlags::from_bits(d.flags.get()).ok_or(ChainError::UnknownFlags(d.flags.get()))?;
        if flags.contains(DescFlags::INDIRECT) {
            return Err(ChainError::NestedIndirect);
        }
        chain.push(mem, &d, flags)?;
        if !flags.contains(DescFlags::NEXT) {
            return Ok(());
        }
        idx = d.next.get();
        if idx >= count {
            return Err(ChainError::NextOutOfRange(idx));
        }
    }
}
