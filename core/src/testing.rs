//! Test helpers (feature `test-utils`): a driver-side view of a split queue
//! that writes descriptors and the available ring the way a driver does
//! (§2.7.13), and reads back the used ring. For unit tests, fuzz targets and
//! benchmarks; never the proof that virtnet works with a real driver.
//!
//! Test code: it trusts its own arithmetic (driver-chosen, not guest input).
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use crate::mem::{GuestAddress, GuestMemory, MemError};
use crate::queue::QueueLayout;
use crate::wire::{DescFlags, Descriptor, UsedElem};

/// One buffer of a chain to add: `(guest address, length, device-writable)`.
pub type Buf = (u64, u32, bool);

/// The driver side of a split queue, over any [`GuestMemory`].
#[derive(Clone, Debug)]
pub struct TestDriver {
    /// The queue's layout.
    pub layout: QueueLayout,
    /// Next descriptor index handed out (wraps at size).
    pub next_desc: u16,
    /// Next avail-ring position.
    pub avail_idx: u16,
    /// Next used-ring position to read.
    pub last_used: u16,
}

impl TestDriver {
    /// A driver for a queue of `size` entries laid out contiguously from
    /// `base` (descriptor table, available ring, used ring at 4-aligned
    /// offsets), with all ring memory zeroed.
    pub fn new<M: GuestMemory + ?Sized>(mem: &M, base: u64, size: u16) -> Result<Self, MemError> {
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        let end = used + 6 + 8 * u64::from(size);
        for a in (base..end).step_by(64) {
            let n = (end - a).min(64) as usize;
            mem.write(GuestAddress(a), &[0u8; 64][..n])?;
        }
        Ok(TestDriver {
            layout: QueueLayout {
                size,
                desc_table: GuestAddress(desc),
                avail_ring: GuestAddress(avail),
                used_ring: GuestAddress(used),
            },
            next_desc: 0,
            avail_idx: 0,
            last_used: 0,
        })
    }

    /// Bytes of guest memory the rings take from `base`.
    pub fn footprint(size: u16) -> u64 {
        let avail = 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        used + 6 + 8 * u64::from(size)
    }

    /// Write descriptor `idx` of the table.
    pub fn write_desc<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        idx: u16,
        d: Descriptor,
    ) -> Result<(), MemError> {
        mem.write_obj(
            GuestAddress(self.layout.desc_table.0 + 16 * u64::from(idx)),
            &d,
        )
    }

    /// Write a chain into consecutive descriptor slots and put its head in
    /// the available ring (not yet published). Returns the head.
    pub fn add_chain<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        bufs: &[Buf],
    ) -> Result<u16, MemError> {
        let size = self.layout.size;
        let head = self.next_desc;
        for (i, &(addr, len, w)) in bufs.iter().enumerate() {
            let idx = self.next_desc;
            let next = (idx + 1) % size;
            let mut flags = DescFlags::empty();
            if w {
                flags |= DescFlags::WRITE;
            }
            if i + 1 < bufs.len() {
                flags |= DescFlags::NEXT;
            }
            self.write_desc(mem, idx, Descriptor::new(addr, len, flags, next))?;
            self.next_desc = next;
        }
        self.push_head(mem, head)?;
        Ok(head)
    }

    /// Put an indirect table at `table` holding `bufs`, and a chain whose
    /// only descriptor points at it. Returns the head.
    pub fn add_indirect<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        table: u64,
        bufs: &[Buf],
    ) -> Result<u16, MemError> {
        for (i, &(addr, len, w)) in bufs.iter().enumerate() {
            let mut flags = DescFlags::empty();
            if w {
                flags |= DescFlags::WRITE;
            }
            if i + 1 < bufs.len() {
                flags |= DescFlags::NEXT;
            }
            let d = Descriptor::new(addr, len, flags, (i + 1) as u16);
            mem.write_obj(GuestAddress(table + 16 * i as u64), &d)?;
        }
        let head = self.next_desc;
        let d = Descriptor::new(table, 16 * bufs.len() as u32, DescFlags::INDIRECT, 0);
        self.write_desc(mem, head, d)?;
        self.next_desc = (head + 1) % self.layout.size;
        self.push_head(mem, head)?;
        Ok(head)
    }

    /// Put `head` in the next available-ring slot (not yet published).
    pub fn push_head<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        head: u16,
    ) -> Result<(), MemError> {
        let slot = u64::from(self.avail_idx % self.layout.size);
        mem.write_u16(GuestAddress(self.layout.avail_ring.0 + 4 + 2 * slot), head)?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Ok(())
    }

    /// Publish the available index (release).
    pub fn publish<M: GuestMemory + ?Sized>(&self, mem: &M) -> Result<(), MemError> {
        self.set_avail_idx(mem, self.avail_idx)
    }

    /// Write any value to avail idx (hostile tests).
    pub fn set_avail_idx<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        idx: u16,
    ) -> Result<(), MemError> {
        mem.store_u16_release(GuestAddress(self.layout.avail_ring.0 + 2), idx)
    }

    /// Write avail flags (NO_INTERRUPT is bit 0).
    pub fn set_avail_flags<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        flags: u16,
    ) -> Result<(), MemError> {
        mem.write_u16(self.layout.avail_ring, flags)
    }

    /// Write used_event (the avail ring's trailing field).
    pub fn set_used_event<M: GuestMemory + ?Sized>(&self, mem: &M, v: u16) -> Result<(), MemError> {
        let a = self.layout.avail_ring.0 + 4 + 2 * u64::from(self.layout.size);
        mem.write_u16(GuestAddress(a), v)
    }

    /// Read avail_event (the used ring's trailing field).
    pub fn avail_event<M: GuestMemory + ?Sized>(&self, mem: &M) -> Result<u16, MemError> {
        let a = self.layout.used_ring.0 + 4 + 8 * u64::from(self.layout.size);
        mem.read_u16(GuestAddress(a))
    }

    /// Read used flags.
    pub fn used_flags<M: GuestMemory + ?Sized>(&self, mem: &M) -> Result<u16, MemError> {
        mem.read_u16(self.layout.used_ring)
    }

    /// The used index the device published.
    pub fn used_idx<M: GuestMemory + ?Sized>(&self, mem: &M) -> Result<u16, MemError> {
        mem.load_u16_acquire(GuestAddress(self.layout.used_ring.0 + 2))
    }

    /// Next used element `(id, len)`, if the device published one.
    pub fn pop_used<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<Option<(u32, u32)>, MemError> {
        if self.used_idx(mem)? == self.last_used {
            return Ok(None);
        }
        let slot = u64::from(self.last_used % self.layout.size);
        let e: UsedElem = mem.read_obj(GuestAddress(self.layout.used_ring.0 + 4 + 8 * slot))?;
        self.last_used = self.last_used.wrapping_add(1);
        Ok(Some((e.id.get(), e.len.get())))
    }
}
