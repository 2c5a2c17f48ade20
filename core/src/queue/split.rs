//! The split virtqueue, device side (VIRTIO 1.2 §2.7).

use super::chain::{walk, DescriptorChain};
use super::{
    Head, LayoutError, Popped, QueueError, QueueFeatures, QueueLayout, RingPart, Virtqueue,
    MAX_QUEUE_SIZE,
};
use crate::mem::{GuestAddress, GuestMemory, MemError};
use crate::wire::ring::{
    avail_ring_bytes, desc_table_bytes, used_ring_bytes, AVAIL_ALIGN, DESC_ALIGN, USED_ALIGN,
    VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY,
};
use crate::wire::UsedElem;
use core::sync::atomic::{fence, Ordering};

// `add_used` writes a used element as one little-endian word: id, then len.
const _: () = assert!(
    core::mem::offset_of!(UsedElem, id) == 0
        && core::mem::offset_of!(UsedElem, len) == 4
        && core::mem::size_of::<UsedElem>() == 8
);

/// `vring_need_event` (§2.7.7.2, the driver's used_event / the device's
/// avail_event): whether moving an index from `old` to `new` crossed
/// `event`, all modulo 2^16. True exactly when `event` lies in
/// `[old, new - 1]` (I-QUEUE-8).
#[inline]
pub fn vring_need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// A split virtqueue as the device sees it: the validated layout (a trusted
/// snapshot taken at activation, I-QUEUE-1) and the device's own indices.
#[derive(Clone, Debug)]
pub struct SplitQueue {
    layout: QueueLayout,
    features: QueueFeatures,
    next_avail: u16,
    next_used: u16,
    /// Last avail idx read from the ring (batches the acquire loads).
    avail_shadow: u16,
    in_flight: u16,
    /// Used idx when the driver was last considered for a notification.
    signalled_used: u16,
    broken: Option<QueueError>,
    /// Used elements added and not yet written to the ring, for positions
    /// `next_used - used_batched .. next_used`, as little-endian words
    /// (I-QUEUE-12): written in one copy (two at the ring's end) when the
    /// queue publishes, or when `used_cap` are waiting.
    used_batch: [u8; USED_BATCH * 8],
    used_batched: u16,
    /// Elements the batch holds before it is written: `USED_BATCH`, or the
    /// ring size when smaller, so one copy never covers a slot twice.
    used_cap: u16,
}

/// Used elements [`SplitQueue`] keeps before writing them to the ring.
pub(crate) const USED_BATCH: usize = 32;

/// How many chains ahead [`SplitQueue::prefetch_ahead`] hints the buffer.
const BUF_AHEAD: u16 = 2;

impl SplitQueue {
    /// Validate a layout against `mem` and build the queue (§2.7: size a
    /// power of two in `1..=max_size` (and ≤ 32768), alignment 16/2/4, each
    /// part inside guest memory, no two parts overlapping).
    pub fn new<M: GuestMemory + ?Sized>(
        layout: QueueLayout,
        features: QueueFeatures,
        max_size: u16,
        mem: &M,
    ) -> Result<SplitQueue, LayoutError> {
        let size = layout.size;
        if size == 0 || !size.is_power_of_two() || size > max_size || size > MAX_QUEUE_SIZE {
            return Err(LayoutError::BadSize(size));
        }
        let parts = [
            (
                RingPart::DescTable,
                layout.desc_table,
                DESC_ALIGN,
                desc_table_bytes(size),
            ),
            (
                RingPart::AvailRing,
                layout.avail_ring,
                AVAIL_ALIGN,
                avail_ring_bytes(size),
            ),
            (
                RingPart::UsedRing,
                layout.used_ring,
                USED_ALIGN,
                used_ring_bytes(size),
            ),
        ];
        for (part, addr, align, len) in parts {
            if addr.0.checked_rem(align) != Some(0) {
                return Err(LayoutError::Misaligned(part));
            }
            if addr.checked_add(len).is_none() {
                return Err(LayoutError::OutsideMemory(part, MemError::Overflow));
            }
            mem.check_range(addr, len)
                .map_err(|e| LayoutError::OutsideMemory(part, e))?;
        }
        for (i, (pa, aa, _, la)) in parts.iter().enumerate() {
            for (pb, ab, _, lb) in parts.iter().skip(i.saturating_add(1)) {
                // Ends cannot overflow: checked above.
                let (ea, eb) = (aa.0.saturating_add(*la), ab.0.saturating_add(*lb));
                if aa.0 < eb && ab.0 < ea {
                    return Err(LayoutError::Overlap(*pa, *pb));
                }
            }
        }
        Ok(SplitQueue {
            layout,
            features,
            next_avail: 0,
            next_used: 0,
            avail_shadow: 0,
            in_flight: 0,
            signalled_used: 0,
            broken: None,
            used_batch: [0; USED_BATCH * 8],
            used_batched: 0,
            used_cap: size.min(USED_BATCH as u16),
        })
    }

    /// Start from given indices (vhost-user `SET_VRING_BASE`, or migration).
    pub fn set_indices(&mut self, next_avail: u16, next_used: u16) {
        self.next_avail = next_avail;
        self.avail_shadow = next_avail;
        self.next_used = next_used;
        self.signalled_used = next_used;
        self.in_flight = 0;
        // Elements of the old positions are meaningless now.
        self.used_batched = 0;
    }

    /// Hint the memory a coming chain will need. The rings and buffers
    /// were last written by the driver's CPU, so taking chain after chain
    /// pays the descriptor and buffer cache misses one after another; hinted
    /// ahead, they overlap (DPDK's vhost prefetches the same way). This
    /// reads the avail entry and the descriptor two chains ahead (loading
    /// their lines) and hints the first two lines of that chain's first
    /// buffer, for writing when `write` (RX: the driver's CPU holds those
    /// lines, and a write to a line fetched only for reading takes a second
    /// miss). Nothing read here is trusted or kept: [`Virtqueue::pop`] reads
    /// and validates everything itself, so a value the driver changes
    /// meanwhile only wastes a hint. Bounded: at most one avail entry and
    /// 8 bytes of one descriptor per call, both through
    /// [`GuestMemory::hint_chain`]; errors are ignored (the next `pop`
    /// reports them). It works from the avail idx `pop` last read and never
    /// loads it itself, so an idle queue still costs one avail-idx load per
    /// check (I-QUEUE-10). Measured: +40–60 % frames/s in a two-process loop,
    /// 3–6 ns more per frame when everything is already in cache
    /// (specs/10-performance.md). Out of line: inlined into the RX loop it
    /// made RX 64 B 5–6 ns slower per frame, with fewer instructions
    /// (specs/10, fifth and seventh rounds).
    #[inline(never)]
    pub fn prefetch_ahead<M: GuestMemory + ?Sized>(&self, mem: &M, write: bool) {
        if self.broken.is_some() {
            return;
        }
        let pending = self.avail_shadow.wrapping_sub(self.next_avail);
        if pending <= BUF_AHEAD {
            return;
        }
        let pos = self.next_avail.wrapping_add(BUF_AHEAD);
        mem.hint_chain(
            self.avail_entry_addr(pos),
            self.layout.desc_table,
            self.layout.size,
            write,
        );
    }

    /// Take the next-used index from the used ring's idx field (vhost-user:
    /// the frontend owns the rings before the backend starts).
    pub fn sync_used_from_ring<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<(), QueueError> {
        let idx = mem
            .load_u16_acquire(self.used_idx_addr())
            .map_err(QueueError::Mem)?;
        self.next_used = idx;
        self.signalled_used = idx;
        self.used_batched = 0;
        Ok(())
    }

    /// The next available-ring position the device will consume
    /// (vhost-user `GET_VRING_BASE`).
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }

    /// The next used-ring position the device will fill.
    pub fn next_used(&self) -> u16 {
        self.next_used
    }

    /// The validated layout.
    pub fn layout(&self) -> QueueLayout {
        self.layout
    }

    /// The negotiated ring features.
    pub fn features(&self) -> QueueFeatures {
        self.features
    }

    /// The avail idx as last read from the ring.
    pub fn avail_idx_seen(&self) -> u16 {
        self.avail_shadow
    }

    /// Whether the driver made chains available that the device has not
    /// popped: from the avail idx last read, else from one new acquire load
    /// of it (validated as [`Virtqueue::pop`] does; an error breaks the
    /// queue the same way).
    pub fn has_available<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Result<bool, QueueError> {
        self.check()?;
        if self.next_avail != self.avail_shadow {
            return Ok(true);
        }
        Ok(self.refresh_avail(mem)? != self.next_avail)
    }

    /// Chains the driver has made available and the device has not popped
    /// (from the last avail idx read; 0 when the ring is broken).
    pub fn pending_hint(&self) -> u16 {
        self.avail_shadow.wrapping_sub(self.next_avail)
    }

    fn mask(&self) -> u16 {
        self.layout.size.wrapping_sub(1)
    }

    fn avail_flags_addr(&self) -> GuestAddress {
        self.layout.avail_ring
    }

    // Ring addresses: the layout was checked to lie inside guest memory
    // (no part wraps), so these sums cannot wrap; `wrapping_*` is exact and
    // cheaper than saturating arithmetic on the hot path.
    #[inline]
    fn avail_idx_addr(&self) -> GuestAddress {
        GuestAddress(self.layout.avail_ring.0.wrapping_add(2))
    }

    #[inline]
    fn avail_entry_addr(&self, pos: u16) -> GuestAddress {
        let slot = u64::from(pos & self.mask());
        GuestAddress(
            self.layout
                .avail_ring
                .0
                .wrapping_add(4)
                .wrapping_add(slot << 1),
        )
    }

    fn used_event_addr(&self) -> GuestAddress {
        self.avail_entry_addr(0)
            .offset_saturating(u64::from(self.layout.size).saturating_mul(2))
    }

    fn used_flags_addr(&self) -> GuestAddress {
        self.layout.used_ring
    }

    #[inline]
    fn used_idx_addr(&self) -> GuestAddress {
        GuestAddress(self.layout.used_ring.0.wrapping_add(2))
    }

    #[inline]
    fn used_entry_addr(&self, pos: u16) -> GuestAddress {
        let slot = u64::from(pos & self.mask());
        GuestAddress(
            self.layout
                .used_ring
                .0
                .wrapping_add(4)
                .wrapping_add(slot << 3),
        )
    }

    fn avail_event_addr(&self) -> GuestAddress {
        self.used_entry_addr(0)
            .offset_saturating(u64::from(self.layout.size).saturating_mul(8))
    }

    fn poison(&mut self, e: QueueError) -> QueueError {
        if self.broken.is_none() {
            vn_warn!("virtqueue stopped: {:?}", e);
            self.broken = Some(e);
        }
        e
    }

    fn check(&self) -> Result<(), QueueError> {
        match self.broken {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Re-read avail idx (acquire) and validate it against `next_avail`.
    fn refresh_avail<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Result<u16, QueueError> {
        let idx = match mem.load_u16_acquire(self.avail_idx_addr()) {
            Ok(i) => i,
            Err(e) => return Err(self.poison(QueueError::Mem(e))),
        };
        if idx.wrapping_sub(self.next_avail) > self.layout.size {
            return Err(self.poison(QueueError::InvalidAvailIdx {
                avail_idx: idx,
                next_avail: self.next_avail,
            }));
        }
        self.avail_shadow = idx;
        Ok(idx)
    }

    /// Write the batched used elements to the ring: at most two copies
    /// (the batch may wrap at the ring's end), no index moved. The batch
    /// holds at most `size` elements (`used_cap`): a driver that re-posts
    /// heads it never reclaimed lets the device complete more than `size`
    /// chains before one publish, and those are written a ring's worth at a
    /// time, each element once, as writing them one by one would; nothing
    /// lands outside the ring.
    fn flush_used<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Result<(), QueueError> {
        let n = self.used_batched;
        if n == 0 {
            return Ok(());
        }
        let first = self.next_used.wrapping_sub(n);
        let to_end = self.layout.size.wrapping_sub(first & self.mask());
        let k = n.min(to_end);
        let bytes = |a: u16, b: u16| {
            self.used_batch
                .get(usize::from(a).saturating_mul(8)..usize::from(b).saturating_mul(8))
                .unwrap_or(&[])
        };
        let r = mem
            .write(self.used_entry_addr(first), bytes(0, k))
            .and_then(|()| {
                if k < n {
                    // From slot 0: the position after the first copy's.
                    mem.write(self.used_entry_addr(first.wrapping_add(k)), bytes(k, n))
                } else {
                    Ok(())
                }
            });
        self.used_batched = 0;
        r.map_err(|e| self.poison(QueueError::Mem(e)))
    }

    /// `pop` found every slot popped and not yet published. Too many in
    /// flight breaks the queue; else the driver is re-posting heads it
    /// never reclaimed (it overruns its ring), and the completions waiting
    /// in the batch are written first, so each lands before the avail slot
    /// it came from is read again and no batch outgrows the ring
    /// (I-QUEUE-12).
    #[cold]
    #[inline(never)]
    fn ring_full<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Result<(), QueueError> {
        if self.in_flight >= self.layout.size {
            return Err(self.poison(QueueError::TooManyInFlight));
        }
        self.flush_used(mem)
    }
}

trait OffsetSaturating {
    fn offset_saturating(self, by: u64) -> GuestAddress;
}

impl OffsetSaturating for GuestAddress {
    /// Ring addresses cannot overflow: the layout was range-checked.
    fn offset_saturating(self, by: u64) -> GuestAddress {
        GuestAddress(self.0.saturating_add(by))
    }
}

impl Virtqueue for SplitQueue {
    #[inline]
    fn pop<M: GuestMemory + ?Sized, const S: usize>(
        &mut self,
        mem: &M,
        chain: &mut DescriptorChain<S>,
    ) -> Result<Option<Popped>, QueueError> {
        self.check()?;
        if self.next_avail == self.avail_shadow && self.refresh_avail(mem)? == self.next_avail {
            return Ok(None);
        }
        // Cannot wrap: `in_flight` stays at most the ring size (32768 at
        // most: `ring_full` refuses more) and the batch at most 32.
        if self.in_flight.wrapping_add(self.used_batched) >= self.layout.size {
            self.ring_full(mem)?;
        }
        // Ordered after the acquire load of avail idx.
        let entry = self.avail_entry_addr(self.next_avail);
        let head = match mem.read_u16(entry) {
            Ok(h) => h,
            Err(e) => return Err(self.poison(QueueError::Mem(e))),
        };
        mem.note_pop(entry, self.next_avail, head);
        if head >= self.layout.size {
            return Err(self.poison(QueueError::InvalidHead(head)));
        }
        let token = Head {
            index: head,
            avail_pos: self.next_avail,
        };
        self.next_avail = self.next_avail.wrapping_add(1);
        // Below the ring size before this pop (checked above).
        self.in_flight = self.in_flight.wrapping_add(1);
        match walk(
            mem,
            self.layout.desc_table,
            self.layout.size,
            head,
            self.features.indirect,
            chain,
        ) {
            Ok(()) => Ok(Some(Popped::Chain(token))),
            Err(Ok(e)) => {
                vn_debug!("malformed chain at head {}: {:?}", head, e);
                Ok(Some(Popped::Malformed(token, e)))
            }
            Err(Err(e)) => Err(self.poison(QueueError::Mem(e))),
        }
    }

    fn undo_pop(&mut self, head: Head) -> Result<(), Head> {
        if head.avail_pos != self.next_avail.wrapping_sub(1) || self.in_flight == 0 {
            return Err(head);
        }
        self.next_avail = head.avail_pos;
        self.in_flight = self.in_flight.saturating_sub(1);
        Ok(())
    }

    fn add_used<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        head: Head,
        len: u32,
    ) -> Result<(), QueueError> {
        self.check()?;
        if self.used_batched >= self.used_cap {
            self.flush_used(mem)?;
        }
        // The element as one 8-byte word (UsedElem's layout: id, then len,
        // little-endian), kept until the queue publishes.
        let elem = (u64::from(len) << 32) | u64::from(head.index);
        // Below `used_cap` (at most 32) here: the products are small.
        let at = usize::from(self.used_batched).wrapping_mul(8);
        if let Some(slot) = self.used_batch.get_mut(at..at.wrapping_add(8)) {
            slot.copy_from_slice(&elem.to_le_bytes());
        }
        self.used_batched = self.used_batched.wrapping_add(1);
        self.next_used = self.next_used.wrapping_add(1);
        self.in_flight = self.in_flight.saturating_sub(1);
        Ok(())
    }

    fn publish_used<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Result<(), QueueError> {
        self.check()?;
        // The elements first; the release store below orders them before
        // the index.
        self.flush_used(mem)?;
        mem.store_u16_release(self.used_idx_addr(), self.next_used)
            .map_err(|e| self.poison(QueueError::Mem(e)))
    }

    fn needs_notification<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Result<bool, QueueError> {
        self.check()?;
        let old = self.signalled_used;
        let new = self.next_used;
        self.signalled_used = new;
        if old == new {
            return Ok(false);
        }
        // The used idx store must be visible before used_event/flags is read
        // (the classic virtio "mb()" of §2.7.7.2).
        fence(Ordering::SeqCst);
        if self.features.event_idx {
            let event = mem
                .read_u16(self.used_event_addr())
                .map_err(|e| self.poison(QueueError::Mem(e)))?;
            Ok(vring_need_event(event, new, old))
        } else {
            let flags = mem
                .read_u16(self.avail_flags_addr())
                .map_err(|e| self.poison(QueueError::Mem(e)))?;
            Ok(flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0)
        }
    }

    fn enable_notifications<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<bool, QueueError> {
        self.check()?;
        // Ask for a kick at the next index beyond what was already seen:
        // that is `next_avail` after a drain, and beyond it when the device
        // gave chains back while waiting for more (merged RX).
        let r = if self.features.event_idx {
            mem.write_u16(self.avail_event_addr(), self.avail_shadow)
        } else {
            mem.write_u16(self.used_flags_addr(), 0)
        };
        r.map_err(|e| self.poison(QueueError::Mem(e)))?;
        // Make the write visible before re-reading avail idx, or a buffer
        // made available in between would wait for a kick that never comes.
        fence(Ordering::SeqCst);
        Ok(self.refresh_avail(mem)? != self.next_avail)
    }

    fn disable_notifications<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<(), QueueError> {
        self.check()?;
        if !self.features.event_idx {
            mem.write_u16(self.used_flags_addr(), VIRTQ_USED_F_NO_NOTIFY)
                .map_err(|e| self.poison(QueueError::Mem(e)))?;
        }
        Ok(())
    }

    fn broken(&self) -> Option<QueueError> {
        self.broken
    }

    fn size(&self) -> u16 {
        self.layout.size
    }

    fn in_flight(&self) -> u16 {
        self.in_flight
    }
}
