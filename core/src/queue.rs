//! The device side of a virtqueue.
//!
//! [`Virtqueue`] is the interface the device model uses; [`SplitQueue`]
//! implements it for the split ring (VIRTIO 1.2 §2.7). A packed-ring
//! implementation (§2.8) can be added behind the same trait.
//!
//! ## Error policy (specs/03-virtqueue.md)
//! - **Malformed chain** ([`ChainError`]): only that chain is bad. `pop`
//!   returns [`Popped::Malformed`] with its head; the device returns the head
//!   with used len 0 and counts it (I-QUEUE-6).
//! - **Broken ring** ([`QueueError`]): the ring itself cannot be trusted
//!   (avail idx ran ahead, head out of range, ring memory gone). The queue
//!   stops: every later call returns the same error in O(1), and the device
//!   sets DEVICE_NEEDS_RESET (I-QUEUE-3).

mod chain;
mod split;

pub use chain::{ChainError, DescriptorChain, Segment, DEFAULT_MAX_SEGMENTS};
pub use split::{vring_need_event, SplitQueue};

use crate::features::Features;
use crate::mem::{GuestAddress, GuestMemory, MemError};
use core::fmt;

/// The largest queue size the split ring allows (§2.7).
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Where the driver put a queue's three parts, and its size, as written to
/// the transport's queue registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QueueLayout {
    /// Number of entries (a power of two, at most 32768).
    pub size: u16,
    /// Descriptor table address (16-byte aligned).
    pub desc_table: GuestAddress,
    /// Available (driver) ring address (2-byte aligned).
    pub avail_ring: GuestAddress,
    /// Used (device) ring address (4-byte aligned).
    pub used_ring: GuestAddress,
}

/// One of the three parts of a split queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RingPart {
    /// The descriptor table.
    DescTable,
    /// The available ring.
    AvailRing,
    /// The used ring.
    UsedRing,
}

/// Why a queue layout was refused at activation (I-QUEUE-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LayoutError {
    /// Size 0, not a power of two, or above the device's maximum / 32768.
    BadSize(u16),
    /// A part is not aligned as §2.7 requires.
    Misaligned(RingPart),
    /// A part is not entirely inside guest memory, or wraps.
    OutsideMemory(RingPart, MemError),
    /// Two parts overlap.
    Overlap(RingPart, RingPart),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::BadSize(s) => write!(f, "queue size {s} is not a power of two in 1..=max"),
            LayoutError::Misaligned(p) => write!(f, "{p:?} is misaligned"),
            LayoutError::OutsideMemory(p, e) => write!(f, "{p:?} is outside guest memory: {e}"),
            LayoutError::Overlap(a, b) => write!(f, "{a:?} overlaps {b:?}"),
        }
    }
}

impl core::error::Error for LayoutError {}

/// Ring-level corruption: the queue is stopped (I-QUEUE-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum QueueError {
    /// The available index moved more than the queue size ahead of the last
    /// consumed one, or backwards (§2.7.6.1; vm-virtio #196).
    InvalidAvailIdx {
        /// The index the driver published.
        avail_idx: u16,
        /// The next entry the device would consume.
        next_avail: u16,
    },
    /// A head index at or beyond the queue size.
    InvalidHead(u16),
    /// The driver made more chains available than could be outstanding
    /// (CVE-2016-5403).
    TooManyInFlight,
    /// Ring memory became inaccessible.
    Mem(MemError),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::InvalidAvailIdx {
                avail_idx,
                next_avail,
            } => write!(
                f,
                "avail idx {avail_idx} is out of range (next avail {next_avail})"
            ),
            QueueError::InvalidHead(h) => write!(f, "head index {h} is out of range"),
            QueueError::TooManyInFlight => f.write_str("more chains in flight than the queue size"),
            QueueError::Mem(e) => write!(f, "ring memory: {e}"),
        }
    }
}

impl core::error::Error for QueueError {}

/// Ring features negotiated for a queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QueueFeatures {
    /// VIRTIO_F_RING_EVENT_IDX.
    pub event_idx: bool,
    /// VIRTIO_F_RING_INDIRECT_DESC.
    pub indirect: bool,
}

impl QueueFeatures {
    /// The ring features within a negotiated set.
    pub fn from_negotiated(f: Features) -> Self {
        QueueFeatures {
            event_idx: f.contains(Features::RING_EVENT_IDX),
            indirect: f.contains(Features::RING_INDIRECT_DESC),
        }
    }
}

/// A popped chain's head: a token that must be given back exactly once,
/// through [`Virtqueue::add_used`] or [`Virtqueue::undo_pop`]. It is not
/// `Clone`, so a chain cannot be completed twice (I-QUEUE-5).
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "a popped head must be returned with add_used or undo_pop"]
pub struct Head {
    index: u16,
    avail_pos: u16,
}

impl Head {
    /// The descriptor index of the chain's head.
    pub fn index(&self) -> u16 {
        self.index
    }
}

/// What [`Virtqueue::pop`] found.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Popped {
    /// A well-formed chain; its segments are in the caller's
    /// [`DescriptorChain`].
    Chain(Head),
    /// A malformed chain: return the head with len 0 and count it.
    Malformed(Head, ChainError),
}

/// The device side of a virtqueue, whatever its ring layout.
pub trait Virtqueue {
    /// Pop the next available chain into `chain`. `Ok(None)` when the driver
    /// has made nothing new available. Reads each descriptor exactly once
    /// and walks at most `size` descriptors (plus one indirect table).
    fn pop<M: GuestMemory + ?Sized, const S: usize>(
        &mut self,
        mem: &M,
        chain: &mut DescriptorChain<S>,
    ) -> Result<Option<Popped>, QueueError>;

    /// Give back the most recently popped head, as if it had not been
    /// popped. Heads must be given back in reverse pop order; a head that is
    /// not the most recent is handed back in `Err`.
    fn undo_pop(&mut self, head: Head) -> Result<(), Head>;

    /// Add a used element for `head` with `len` bytes written. Not visible
    /// to the driver until [`Virtqueue::publish_used`]; the element itself
    /// may reach the ring only then (the split queue batches them and
    /// writes them in one copy, I-QUEUE-12).
    fn add_used<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        head: Head,
        len: u32,
    ) -> Result<(), QueueError>;

    /// Publish the used index (release ordering: every element and byte
    /// written before is visible first, §2.7.8.2).
    fn publish_used<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Result<(), QueueError>;

    /// Whether the driver wants a used-buffer notification for what was
    /// published since the last call (§2.7.7.2).
    fn needs_notification<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Result<bool, QueueError>;

    /// Ask the driver for available-buffer notifications again; returns
    /// whether buffers are already available (so the caller polls again
    /// instead of missing them).
    fn enable_notifications<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<bool, QueueError>;

    /// Ask the driver not to notify (busy polling).
    fn disable_notifications<M: GuestMemory + ?Sized>(&mut self, mem: &M)
        -> Result<(), QueueError>;

    /// The error that stopped the queue, if any.
    fn broken(&self) -> Option<QueueError>;

    /// Queue size.
    fn size(&self) -> u16;

    /// Number of chains popped and not yet returned.
    fn in_flight(&self) -> u16;
}

#[cfg(test)]
mod tests;
