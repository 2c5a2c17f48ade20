//! The driver side of a split queue for the device targets: a descriptor
//! free list, chains posted from buffer lists (direct or through an
//! indirect table), raw hostile moves, and the used ring read back and
//! matched against what was posted.

use virtnet::queue::QueueLayout;
use virtnet::wire::{DescFlags, Descriptor};
use zerocopy::IntoBytes;

use crate::ram::GuestRam;

/// One buffer: `(guest address, length, device-writable)`.
pub type Buf = (u64, u32, bool);

/// A chain the driver made available.
#[derive(Clone, Debug)]
pub struct Posted {
    /// Head descriptor index.
    pub head: u16,
    /// Descriptor-table slots it holds.
    pub descs: Vec<u16>,
    /// Its buffers, as described.
    pub bufs: Vec<Buf>,
    /// A harness tag (a frame sequence number, ...).
    pub tag: u64,
}

impl Posted {
    /// Bytes the device may write.
    pub fn writable_len(&self) -> u64 {
        self.bufs
            .iter()
            .filter(|b| b.2)
            .map(|b| u64::from(b.1))
            .sum()
    }

    /// Read the first `len` device-writable bytes back (driver side).
    pub fn read_written(&self, ram: &GuestRam, len: usize) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        for &(a, l, w) in &self.bufs {
            if !w || out.len() >= len {
                continue;
            }
            let n = (l as usize).min(len - out.len());
            out.extend(ram.peek(a, n)?);
        }
        (out.len() == len).then_some(out)
    }
}

/// A used element read back: `(id, len)` and the chain it completed, if
/// the driver posted one with that head.
pub type Used = (u32, u32, Option<Posted>);

/// The driver side of one split queue.
#[derive(Debug)]
pub struct Driver {
    /// The rings.
    pub layout: QueueLayout,
    free: Vec<u16>,
    /// Next avail-ring position.
    pub avail_idx: u16,
    /// Next used-ring position to read.
    pub last_used: u16,
    /// Chains posted and not yet seen in the used ring.
    pub posted: Vec<Posted>,
}

impl Driver {
    /// A driver for rings at `layout` (the caller zeroed them).
    pub fn new(layout: QueueLayout) -> Driver {
        Driver {
            layout,
            free: (0..layout.size).rev().collect(),
            avail_idx: 0,
            last_used: 0,
            posted: Vec::new(),
        }
    }

    /// Free descriptors.
    pub fn free_descs(&self) -> usize {
        self.free.len()
    }

    fn desc_addr(&self, idx: u16) -> u64 {
        self.layout.desc_table.0 + 16 * u64::from(idx)
    }

    fn write_desc(&self, ram: &GuestRam, idx: u16, d: Descriptor) {
        ram.poke(self.desc_addr(idx), d.as_bytes());
    }

    /// Post `bufs` as one chain (through an indirect table at `table` if
    /// given), and put its head in the avail ring (not published). `None`
    /// if descriptors ran out or `bufs` is empty.
    pub fn post(
        &mut self,
        ram: &GuestRam,
        bufs: &[Buf],
        table: Option<u64>,
        tag: u64,
    ) -> Option<u16> {
        let flags = |i: usize, w: bool| {
            let mut f = DescFlags::empty();
            if w {
                f |= DescFlags::WRITE;
            }
            if i + 1 < bufs.len() {
                f |= DescFlags::NEXT;
            }
            f
        };
        if bufs.is_empty() {
            return None;
        }
        let descs: Vec<u16> = match table {
            Some(t) => {
                for (i, &(a, l, w)) in bufs.iter().enumerate() {
                    let d = Descriptor::new(a, l, flags(i, w), (i + 1) as u16);
                    ram.poke(t.wrapping_add(16 * i as u64), d.as_bytes());
                }
                let idx = self.free.pop()?;
                let len = 16 * bufs.len() as u32;
                self.write_desc(ram, idx, Descriptor::new(t, len, DescFlags::INDIRECT, 0));
                vec![idx]
            }
            None => {
                if self.free.len() < bufs.len() {
                    return None;
                }
                let descs: Vec<u16> = (0..bufs.len()).filter_map(|_| self.free.pop()).collect();
                for (i, &(a, l, w)) in bufs.iter().enumerate() {
                    let next = descs.get(i + 1).copied().unwrap_or(0);
                    self.write_desc(ram, descs[i], Descriptor::new(a, l, flags(i, w), next));
                }
                descs
            }
        };
        let head = descs[0];
        self.push_head(ram, head);
        self.posted.push(Posted {
            head,
            descs,
            bufs: bufs.to_vec(),
            tag,
        });
        Some(head)
    }

    /// Put any value in the next avail slot (hostile; not published).
    pub fn push_head(&mut self, ram: &GuestRam, head: u16) {
        let slot = u64::from(self.avail_idx % self.layout.size);
        ram.poke(self.layout.avail_ring.0 + 4 + 2 * slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    /// Publish the avail idx.
    pub fn publish(&self, ram: &GuestRam) {
        self.set_avail_idx(ram, self.avail_idx);
    }

    /// Write any avail idx (hostile).
    pub fn set_avail_idx(&self, ram: &GuestRam, idx: u16) {
        ram.poke(self.layout.avail_ring.0 + 2, &idx.to_le_bytes());
    }

    /// Write the avail flags.
    pub fn set_avail_flags(&self, ram: &GuestRam, flags: u16) {
        ram.poke(self.layout.avail_ring.0, &flags.to_le_bytes());
    }

    /// Write used_event.
    pub fn set_used_event(&self, ram: &GuestRam, v: u16) {
        let a = self.layout.avail_ring.0 + 4 + 2 * u64::from(self.layout.size);
        ram.poke(a, &v.to_le_bytes());
    }

    /// The used idx the device published.
    pub fn used_idx(&self, ram: &GuestRam) -> Option<u16> {
        let b = ram.peek(self.layout.used_ring.0 + 2, 2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Read every new used element, giving back the descriptors of the
    /// chains they complete.
    pub fn take_used(&mut self, ram: &GuestRam) -> Vec<Used> {
        let mut out = Vec::new();
        let Some(idx) = self.used_idx(ram) else {
            return out;
        };
        while self.last_used != idx {
            let slot = u64::from(self.last_used % self.layout.size);
            let Some(e) = ram.peek(self.layout.used_ring.0 + 4 + 8 * slot, 8) else {
                break;
            };
            let id = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let len = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            let posted = self
                .posted
                .iter()
                .position(|p| u32::from(p.head) == id)
                .map(|i| self.posted.remove(i));
            if let Some(p) = &posted {
                self.free.extend(p.descs.iter().copied());
            }
            out.push((id, len, posted));
            self.last_used = self.last_used.wrapping_add(1);
        }
        out
    }
}
