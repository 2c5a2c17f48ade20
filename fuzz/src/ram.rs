//! Guest RAM for the targets: one or two host allocations mapped as a
//! `RegionMemory<2>` (the memory type the shims use, with its `unsafe`
//! copy code under the fuzzer and AddressSanitizer), at a low, middle or
//! top-of-address-space guest address, with an optional hole.

use arbitrary::Arbitrary;
use virtnet::mem::{ChainHint, GuestAddress, GuestMemory, Region, RegionMemory};

use crate::recording::RecordingMemory;
use crate::{enc_enum, enc_struct};

/// Page size used for sizes and placement.
pub const PAGE: u64 = 4096;

/// Where guest RAM starts.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// At guest address 0.
    Low,
    /// At 1 GiB.
    Mid,
    /// Ending one page below 2^64 (addresses near the wrap).
    Top,
}
enc_enum!(Place, 3, { 0 => Place::Low => [], 1 => Place::Mid => [], 2 => Place::Top => [] });

/// A hole: RAM is split into two regions `gap_pages` apart.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hole {
    /// Pages in the first region (at least 1).
    pub at_page: u8,
    /// Pages of hole (0: two adjacent regions).
    pub gap_pages: u8,
}
enc_struct!(Hole { at_page, gap_pages });

/// The shape of guest RAM.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemSpec {
    /// Size: `(pages % 64 + 1)` pages (4 KiB .. 256 KiB).
    pub pages: u8,
    /// Where it starts.
    pub place: Place,
    /// An optional hole.
    pub hole: Option<Hole>,
}
enc_struct!(MemSpec { pages, place, hole });

impl MemSpec {
    /// `pages` pages of RAM at address 0, no hole.
    pub fn low(pages: u8) -> MemSpec {
        MemSpec {
            pages: pages.saturating_sub(1),
            place: Place::Low,
            hole: None,
        }
    }
}

/// An address a fuzz input names: relative to RAM, or raw.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    /// `base + off % span` (RAM and the hole).
    Off(u32),
    /// `base + span - back`: near the end of RAM.
    FromEnd(u16),
    /// Any 64-bit address.
    Raw(u64),
}
enc_enum!(Addr, 3, {
    0 => Addr::Off(o) => [o],
    1 => Addr::FromEnd(b) => [b],
    2 => Addr::Raw(a) => [a],
});

struct Alloc {
    ptr: *mut u8,
    len: usize,
}

/// Guest RAM: owns its host allocations; the device and the driver side
/// reach them only through [`GuestRam::mem`].
pub struct GuestRam {
    allocs: Vec<Alloc>,
    mem: RegionMemory<2>,
    /// First guest address.
    pub base: u64,
    /// Bytes from `base` to the end of RAM (the hole included).
    pub span: u64,
    /// Bytes of RAM.
    pub size: u64,
    /// The hole `[start, end)`, if any (empty for adjacent regions).
    pub hole: Option<(u64, u64)>,
}

impl GuestRam {
    /// Build RAM as `spec` says, zeroed.
    pub fn new(spec: &MemSpec) -> GuestRam {
        let pages = u64::from(spec.pages % 64) + 1;
        let size = pages * PAGE;
        let (first, gap) = match spec.hole {
            Some(h) if pages > 1 => {
                let at = u64::from(h.at_page) % (pages - 1) + 1;
                (at * PAGE, u64::from(h.gap_pages % 16) * PAGE)
            }
            _ => (size, 0),
        };
        let span = size + gap;
        let base = match spec.place {
            Place::Low => 0,
            Place::Mid => 0x4000_0000,
            Place::Top => (u64::MAX - span - PAGE + 1) & !(PAGE - 1),
        };
        let mut parts = vec![(base, first)];
        if first < size {
            parts.push((base + first + gap, size - first));
        }
        let mut ram = GuestRam {
            allocs: Vec::new(),
            mem: RegionMemory::new(),
            base,
            span,
            size,
            hole: (first < size).then_some((base + first, base + first + gap)),
        };
        for (gpa, len) in parts {
            let len = len as usize;
            let ptr = Box::into_raw(vec![0u8; len].into_boxed_slice()) as *mut u8;
            ram.allocs.push(Alloc { ptr, len });
            // SAFETY: `ptr..ptr+len` is a live allocation owned by `ram`,
            // freed only in `Drop` after every user of `ram.mem` is gone
            // (they borrow `ram`); no Rust reference to it is ever created.
            let region = unsafe { Region::new(gpa, ptr, len) }.expect("valid region");
            ram.mem.add(region).expect("two regions fit");
        }
        ram
    }

    /// The guest memory.
    pub fn mem(&self) -> &RegionMemory<2> {
        &self.mem
    }

    /// The guest memory as the device sees it in every target: behind the
    /// write oracle, with each chain hint's one-region decision checked
    /// (I-FUZZ-7).
    pub fn recording(&self) -> RecordingMemory<&RegionMemory<2>> {
        RecordingMemory::new(&self.mem, virtnet::queue::DEFAULT_MAX_SEGMENTS)
            .with_hint_probe(region_hint_probe)
    }

    /// Resolve an input address.
    pub fn addr(&self, a: Addr) -> u64 {
        match a {
            Addr::Off(o) => self.base + u64::from(o) % self.span,
            Addr::FromEnd(b) => (self.base + self.span).saturating_sub(u64::from(b)),
            Addr::Raw(r) => r,
        }
    }

    /// Whether `[addr, addr+len)` is RAM.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        self.mem.check_range(GuestAddress(addr), len).is_ok()
    }

    /// Write bytes (driver side); errors ignored, as a driver scribbling
    /// outside RAM would get nothing.
    pub fn poke(&self, addr: u64, bytes: &[u8]) -> bool {
        self.mem.write(GuestAddress(addr), bytes).is_ok()
    }

    /// Read bytes (driver side).
    pub fn peek(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.mem.read(GuestAddress(addr), &mut v).ok()?;
        Some(v)
    }
}

/// The [`crate::recording::HintProbe`] of [`GuestRam::recording`]:
/// `RegionMemory`'s one-region hint decision, counted when it is a buffer.
fn region_hint_probe(
    mem: &&RegionMemory<2>,
    entry: GuestAddress,
    desc_table: GuestAddress,
    size: u16,
) -> ChainHint {
    let d = mem.chain_hint(entry, desc_table, size);
    if let ChainHint::Buffer(_) = d {
        crate::count(|c| c.hint_buffers += 1);
    }
    d
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        self.mem = RegionMemory::new();
        for a in self.allocs.drain(..) {
            // SAFETY: `a.ptr`/`a.len` came from `Box::into_raw` of a boxed
            // slice of exactly `a.len` bytes, and the regions describing it
            // were dropped just above.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(a.ptr, a.len)) });
        }
    }
}

impl std::fmt::Debug for GuestRam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GuestRam {{ base: {:#x}, size: {:#x}, hole: {:x?} }}",
            self.base, self.size, self.hole
        )
    }
}

/// A bump allocator of driver buffers inside RAM, after a reserved prefix.
#[derive(Clone, Debug)]
pub struct Bump {
    start: u64,
    next: u64,
    end: u64,
    /// Set once an allocation had to wrap around (buffers may overlap
    /// older ones from then on).
    pub wrapped: bool,
}

impl Bump {
    /// Allocate from `[start, end)`.
    pub fn new(start: u64, end: u64) -> Bump {
        Bump {
            start,
            next: start,
            end,
            wrapped: false,
        }
    }

    /// `len` bytes aligned to `align` (a power of two), or `None` if they
    /// cannot fit at all.
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        let round = |a: u64| (a + align - 1) & !(align - 1);
        let mut at = round(self.next);
        if at.checked_add(len)? > self.end {
            at = round(self.start);
            if at.checked_add(len)? > self.end {
                return None;
            }
            self.wrapped = true;
        }
        self.next = at + len;
        Some(at)
    }

    /// Start over (every buffer was given back).
    pub fn reset(&mut self) {
        self.next = self.start;
    }
}
