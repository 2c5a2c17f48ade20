//! Fixed frame pools: `COUNT` slots of `SLOT` bytes, no allocation ever.
//!
//! A [`FramePool`] is usually a `static` (it is `const`-constructible) or
//! lives in the embedder's device state. [`FramePool::acquire`] hands out a
//! [`Frame`], an RAII handle that owns one slot and gives it back when
//! dropped. Acquire and release are O(1) and go through a
//! `critical_section::Mutex`, so a pool can be shared with interrupt context.
//! Exhaustion returns `None`: it is backpressure, never an allocation and
//! never a panic (I-POOL-1 .. I-POOL-3 in `specs/05-frame-pool.md`).
#![allow(unsafe_code)]

use core::cell::{RefCell, UnsafeCell};
use core::fmt;

/// Default slot size: an MTU-1500 Ethernet frame (1514 bytes) plus a VLAN
/// tag, rounded up to a multiple of 64.
pub const DEFAULT_SLOT_SIZE: usize = 1536;
/// Default slots per direction, as in the design virtnet comes from.
pub const DEFAULT_SLOT_COUNT: usize = 256;

struct FreeList<const COUNT: usize> {
    /// Released slot indices (LIFO: the most recently used slot is warm).
    stack: heapless::Vec<u16, COUNT>,
    /// Slots `fresh..COUNT` were never handed out.
    fresh: usize,
}

/// A pool of `COUNT` frame slots of `SLOT` bytes each.
pub struct FramePool<const SLOT: usize = DEFAULT_SLOT_SIZE, const COUNT: usize = DEFAULT_SLOT_COUNT>
{
    slots: [UnsafeCell<[u8; SLOT]>; COUNT],
    free: critical_section::Mutex<RefCell<FreeList<COUNT>>>,
}

// SAFETY: a slot's bytes are only reachable through the one `Frame` that
// owns its index (the free list, guarded by a critical section, hands each
// index to exactly one owner at a time, I-POOL-2); every other field is
// behind the critical-section mutex.
unsafe impl<const SLOT: usize, const COUNT: usize> Sync for FramePool<SLOT, COUNT> {}

impl<const SLOT: usize, const COUNT: usize> Default for FramePool<SLOT, COUNT> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SLOT: usize, const COUNT: usize> fmt::Debug for FramePool<SLOT, COUNT> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramePool")
            .field("slot_size", &SLOT)
            .field("count", &COUNT)
            .field("available", &self.available())
            .finish()
    }
}

impl<const SLOT: usize, const COUNT: usize> FramePool<SLOT, COUNT> {
    const CHECK: () = assert!(COUNT > 0 && COUNT <= 65536 && SLOT > 0, "pool size");

    /// A pool with every slot free.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        FramePool {
            slots: [const { UnsafeCell::new([0u8; SLOT]) }; COUNT],
            free: critical_section::Mutex::new(RefCell::new(FreeList {
                stack: heapless::Vec::new(),
                fresh: 0,
            })),
        }
    }

    /// Bytes per slot.
    pub const fn slot_size(&self) -> usize {
        SLOT
    }

    /// Total slots.
    pub const fn capacity(&self) -> usize {
        COUNT
    }

    /// Free slots right now.
    pub fn available(&self) -> usize {
        critical_section::with(|cs| {
            let fl = self.free.borrow_ref(cs);
            fl.stack
                .len()
                .saturating_add(COUNT.saturating_sub(fl.fresh))
        })
    }

    /// Take a free slot, or `None` when all are in use (backpressure).
    pub fn acquire(&self) -> Option<Frame<'_, SLOT, COUNT>> {
        let index = critical_section::with(|cs| {
            let mut fl = self.free.borrow_ref_mut(cs);
            if let Some(i) = fl.stack.pop() {
                return Some(i);
            }
            if fl.fresh < COUNT {
                let i = u16::try_from(fl.fresh).ok()?;
                fl.fresh = fl.fresh.saturating_add(1);
                Some(i)
            } else {
                None
            }
        })?;
        Some(Frame {
            pool: self,
            index,
            len: 0,
        })
    }

    fn release(&self, index: u16) {
        critical_section::with(|cs| {
            // Cannot fail: at most COUNT indices exist and each is released
            // once (its Frame is dropped once).
            let _ = self.free.borrow_ref_mut(cs).stack.push(index);
        });
    }
}

/// One slot of a [`FramePool`], owned until dropped. Holds a frame of
/// [`Frame::len`] bytes.
pub struct Frame<'p, const SLOT: usize = DEFAULT_SLOT_SIZE, const COUNT: usize = DEFAULT_SLOT_COUNT>
{
    pool: &'p FramePool<SLOT, COUNT>,
    index: u16,
    len: usize,
}

impl<const SLOT: usize, const COUNT: usize> fmt::Debug for Frame<'_, SLOT, COUNT> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("slot", &self.index)
            .field("len", &self.len)
            .finish()
    }
}

impl<const SLOT: usize, const COUNT: usize> Frame<'_, SLOT, COUNT> {
    fn slot(&self) -> &UnsafeCell<[u8; SLOT]> {
        // The index came from the pool's free list, so it is < COUNT.
        match self.pool.slots.get(usize::from(self.index)) {
            Some(s) => s,
            None => unreachable_slot(),
        }
    }

    /// The slot index (for logs).
    pub fn slot_index(&self) -> u16 {
        self.index
    }

    /// The frame's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot size.
    pub fn capacity(&self) -> usize {
        SLOT
    }

    /// Set the frame length; refused (returns `false`) beyond the slot size.
    pub fn set_len(&mut self, len: usize) -> bool {
        if len > SLOT {
            return false;
        }
        self.len = len;
        true
    }

    /// The frame's bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: this `Frame` is the only owner of its slot index (I-POOL-2),
        // so no `&mut` to the slot exists while `&self` is borrowed.
        let all: &[u8; SLOT] = unsafe { &*self.slot().get() };
        all.get(..self.len).unwrap_or(&[])
    }

    /// The frame's bytes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        self.buffer_mut().get_mut(..len).unwrap_or(&mut [])
    }

    /// The whole slot, for filling; then call [`Frame::set_len`].
    pub fn buffer_mut(&mut self) -> &mut [u8; SLOT] {
        // SAFETY: this `Frame` is the only owner of its slot index (I-POOL-2)
        // and `&mut self` makes this the only borrow of it.
        unsafe { &mut *self.slot().get() }
    }

    /// Copy `data` in as the frame; refused (returns `false`) if too long.
    pub fn fill_from(&mut self, data: &[u8]) -> bool {
        match self.buffer_mut().get_mut(..data.len()) {
            Some(dst) => {
                dst.copy_from_slice(data);
                self.len = data.len();
                true
            }
            None => false,
        }
    }
}

impl<const SLOT: usize, const COUNT: usize> Drop for Frame<'_, SLOT, COUNT> {
    fn drop(&mut self) {
        self.pool.release(self.index);
    }
}

#[cold]
fn unreachable_slot() -> ! {
    // Indices are only minted below COUNT; this cannot be reached.
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// I-POOL-1: exhaustion is `None`, and dropping a frame frees its slot.
    #[test]
    fn exhaustion_is_backpressure_and_drop_returns_the_slot() {
        let pool: FramePool<64, 4> = FramePool::new();
        let frames: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
        assert_eq!(pool.available(), 0);
        assert!(pool.acquire().is_none());
        drop(frames);
        assert_eq!(pool.available(), 4);
        assert!(pool.acquire().is_some());
    }

    /// I-POOL-2: two live frames never share a slot.
    #[test]
    fn live_frames_have_distinct_slots_and_keep_their_bytes() {
        let pool: FramePool<16, 8> = FramePool::new();
        let mut frames: Vec<_> = (0..8u8)
            .map(|i| {
                let mut f = pool.acquire().unwrap();
                assert!(f.fill_from(&[i; 16]));
                f
            })
            .collect();
        let mut idx: Vec<u16> = frames.iter().map(|f| f.slot_index()).collect();
        idx.sort();
        idx.dedup();
        assert_eq!(idx.len(), 8);
        for (i, f) in frames.iter().enumerate() {
            assert!(f.as_slice().iter().all(|&b| b == i as u8));
        }
        frames.truncate(3);
        let f = pool.acquire().unwrap();
        assert!(!frames.iter().any(|g| g.slot_index() == f.slot_index()));
    }

    #[test]
    fn set_len_and_fill_refuse_more_than_the_slot() {
        let pool: FramePool<16, 1> = FramePool::new();
        let mut f = pool.acquire().unwrap();
        assert!(!f.set_len(17));
        assert!(!f.fill_from(&[0; 17]));
        assert!(f.set_len(16));
        assert_eq!(f.as_mut_slice().len(), 16);
    }

    /// A static pool shared by threads (the interrupt-context sharing model).
    #[test]
    fn a_static_pool_is_shared_between_threads() {
        static POOL: FramePool<32, 16> = FramePool::new();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..200u32 {
                        if let Some(mut f) = POOL.acquire() {
                            f.fill_from(&[(t * 7 + i) as u8; 32]);
                            assert!(f.as_slice().iter().all(|&b| b == (t * 7 + i) as u8));
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(POOL.available(), 16);
    }
}
