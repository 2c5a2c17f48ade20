//! Target `queue`: a split queue under a hostile driver.
//!
//! The input gives guest RAM, a layout, the ring features, then a sequence
//! of operations, device side (pop, add used, undo, publish, notification
//! checks, enable/disable notifications, reads and writes into popped
//! chains, set_indices, sync, reset) and driver side (well-formed chains,
//! raw heads, avail idx moves, descriptor and indirect-table rewrites,
//! scribbles).
//!
//! Oracles, after every operation (specs/09-fuzzing.md):
//! - every device write is checked by [`RecordingMemory`] (I-FUZZ-2/3);
//! - a popped chain agrees with the reference walk: accepted chains have
//!   exactly its segments and walk count, refused ones break a rule
//!   (I-FUZZ-1 differential);
//! - descriptors walked per pop ≤ size + indirect table entries (I-FUZZ-1);
//! - `in_flight` ≤ size and matches the heads held; `Ok(None)` only when
//!   avail idx equals next_avail; a broken queue returns its error forever;
//! - `read_at`/`write_at` move exactly `min(len, part - offset)` bytes;
//! - `needs_notification`, `enable_notifications` and
//!   `disable_notifications` agree with §2.7.7.2 / §2.7.10 computed here.
//!
//! [`RecordingMemory`]: crate::recording::RecordingMemory

use arbitrary::Arbitrary;
use virtnet::mem::GuestAddress;
use virtnet::queue::{
    DescriptorChain, Head, Popped, QueueError, QueueFeatures, QueueLayout, SplitQueue, Virtqueue,
    MAX_QUEUE_SIZE,
};
use virtnet::wire::Descriptor;
use zerocopy::IntoBytes;

use crate::driver::Driver;
use crate::encode::{Bytes, Enc};
use crate::ram::{Addr, GuestRam, MemSpec};
use crate::recording::ref_walk;
use crate::{enc_enum, enc_struct};

/// A queue size.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// `1 << (v % 16)`: valid up to the maximum.
    Log2(u8),
    /// Any value (0, not a power of two, above 32768).
    Raw(u16),
}
enc_enum!(Size, 2, { 0 => Size::Log2(v) => [v], 1 => Size::Raw(v) => [v] });

impl Size {
    /// The size it names.
    pub fn get(self) -> u16 {
        match self {
            Size::Log2(v) => 1 << (v % 16),
            Size::Raw(v) => v,
        }
    }
}

/// Where the rings go.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rings {
    /// Descriptor table, avail ring, used ring contiguous from `at`
    /// (16-aligned), as a driver lays them out.
    Packed(Addr),
    /// Three addresses, as given.
    Raw(Addr, Addr, Addr),
}
enc_enum!(Rings, 2, {
    0 => Rings::Packed(a) => [a],
    1 => Rings::Raw(a, b, c) => [a, b, c],
});

/// The bytes a contiguous queue of `size` entries takes.
pub fn footprint(size: u16) -> u64 {
    let s = u64::from(size);
    let used = (16 * s + 6 + 2 * s + 3) & !3;
    used + 6 + 8 * s
}

/// The contiguous layout of a queue of `size` at `at` (16-aligned up).
pub fn packed_layout(at: u64, size: u16) -> QueueLayout {
    let desc = at.wrapping_add(15) & !15;
    let s = u64::from(size);
    let avail = desc.wrapping_add(16 * s);
    let used = avail.wrapping_add(6 + 2 * s).wrapping_add(3) & !3;
    QueueLayout {
        size,
        desc_table: GuestAddress(desc),
        avail_ring: GuestAddress(avail),
        used_ring: GuestAddress(used),
    }
}

/// A buffer of a well-formed chain.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufSpec {
    /// Where.
    pub at: Addr,
    /// Length.
    pub len: u16,
    /// Device-writable.
    pub writable: bool,
}
enc_struct!(BufSpec { at, len, writable });

/// A raw descriptor.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescSpec {
    /// Buffer address.
    pub addr: Addr,
    /// Length.
    pub len: u32,
    /// Flags (any bits).
    pub flags: u16,
    /// Next index.
    pub next: u16,
}
enc_struct!(DescSpec {
    addr,
    len,
    flags,
    next
});

impl DescSpec {
    /// The 16 descriptor bytes, its address resolved in `ram`.
    pub fn bytes(&self, ram: &GuestRam) -> [u8; 16] {
        let d = Descriptor {
            addr: ram.addr(self.addr).into(),
            len: self.len.into(),
            flags: self.flags.into(),
            next: self.next.into(),
        };
        let mut b = [0u8; 16];
        b.copy_from_slice(d.as_bytes());
        b
    }
}

/// One operation.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Device: pop into a 64-segment chain (`small`: a 4-segment one).
    Pop {
        /// Use `DescriptorChain<4>`.
        small: bool,
    },
    /// Device: complete a held head with `len`.
    AddUsed {
        /// Which held head.
        pick: u8,
        /// Used length.
        len: u32,
    },
    /// Device: give back the most recent head.
    UndoPop,
    /// Device: give back a held head that may not be the most recent.
    UndoAny {
        /// Which held head.
        pick: u8,
    },
    /// Device: publish used idx.
    Publish,
    /// Device: ask whether to notify.
    NeedsNotification,
    /// Device: enable notifications.
    Enable,
    /// Device: disable notifications.
    Disable,
    /// Device: write into a held chain's writable part.
    Write {
        /// Which held head.
        pick: u8,
        /// Offset into the writable part.
        offset: u16,
        /// Bytes.
        len: u16,
    },
    /// Device: read a held chain's readable part.
    Read {
        /// Which held head.
        pick: u8,
        /// Offset into the readable part.
        offset: u16,
        /// Bytes.
        len: u16,
    },
    /// Driver: post a well-formed chain (through an indirect table at the
    /// address if given).
    Chain {
        /// Buffers.
        bufs: Vec<BufSpec>,
        /// Indirect table address.
        indirect: Option<Addr>,
    },
    /// Driver: put any head in the avail ring.
    PushHead(u16),
    /// Driver: publish its avail idx.
    PublishAvail,
    /// Driver: write any avail idx.
    SetAvailIdx(u16),
    /// Driver: rewrite descriptor `idx % size`.
    Desc(u16, DescSpec),
    /// Driver: write an indirect table.
    Table(Addr, Vec<DescSpec>),
    /// Driver: used_event.
    UsedEvent(u16),
    /// Driver: avail flags.
    AvailFlags(u16),
    /// Driver: any bytes anywhere.
    Scribble(Addr, Bytes),
    /// Embedder: `set_indices`.
    SetIndices(u16, u16),
    /// Embedder: `sync_used_from_ring`.
    SyncUsed,
    /// Embedder: a new queue on the same layout (device reset).
    Reset,
}
enc_enum!(Op, 22, {
    0 => Op::Pop { small } => [small],
    1 => Op::AddUsed { pick, len } => [pick, len],
    2 => Op::UndoPop => [],
    3 => Op::UndoAny { pick } => [pick],
    4 => Op::Publish => [],
    5 => Op::NeedsNotification => [],
    6 => Op::Enable => [],
    7 => Op::Disable => [],
    8 => Op::Write { pick, offset, len } => [pick, offset, len],
    9 => Op::Read { pick, offset, len } => [pick, offset, len],
    10 => Op::Chain { bufs, indirect } => [bufs, indirect],
    11 => Op::PushHead(h) => [h],
    12 => Op::PublishAvail => [],
    13 => Op::SetAvailIdx(i) => [i],
    14 => Op::Desc(i, d) => [i, d],
    15 => Op::Table(a, d) => [a, d],
    16 => Op::UsedEvent(v) => [v],
    17 => Op::AvailFlags(v) => [v],
    18 => Op::Scribble(a, b) => [a, b],
    19 => Op::SetIndices(a, u) => [a, u],
    20 => Op::SyncUsed => [],
    21 => Op::Reset => [],
});

/// The `queue` target's input.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Guest RAM.
    pub mem: MemSpec,
    /// Queue size.
    pub size: Size,
    /// The device's maximum: `1 << (v % 16)`, or 32768.
    pub max_log2: Option<u8>,
    /// Ring placement.
    pub rings: Rings,
    /// VIRTIO_F_RING_EVENT_IDX.
    pub event_idx: bool,
    /// VIRTIO_F_RING_INDIRECT_DESC.
    pub indirect: bool,
    /// The operations.
    pub ops: Vec<Op>,
}
enc_struct!(Input {
    mem,
    size,
    max_log2,
    rings,
    event_idx,
    indirect,
    ops
});

impl Input {
    /// The encoded input (a corpus file).
    pub fn encode(&self) -> Vec<u8> {
        Enc::of(self)
    }
}

struct Held {
    head: Head,
    chain: Option<DescriptorChain>,
}

fn u16_at(ram: &GuestRam, a: u64) -> Option<u16> {
    ram.peek(a, 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn pick<T>(v: &[T], p: u8) -> Option<usize> {
    (!v.is_empty()).then(|| usize::from(p) % v.len())
}

/// Run one input; panics on an oracle failure.
pub fn run(input: &Input) {
    let ram = GuestRam::new(&input.mem);
    let size = input.size.get();
    let max = input.max_log2.map_or(MAX_QUEUE_SIZE, |v| 1 << (v % 16));
    let layout = match input.rings {
        Rings::Packed(a) => packed_layout(ram.addr(a), size),
        Rings::Raw(a, b, c) => QueueLayout {
            size,
            desc_table: GuestAddress(ram.addr(a)),
            avail_ring: GuestAddress(ram.addr(b)),
            used_ring: GuestAddress(ram.addr(c)),
        },
    };
    let features = QueueFeatures {
        event_idx: input.event_idx,
        indirect: input.indirect,
    };
    let mem = ram.recording();
    let Ok(mut q) = SplitQueue::new(layout, features, max, &mem) else {
        // Refused layouts are the whole test (I-QUEUE-1 is unit-tested);
        // nothing may have been written.
        mem.assert_clean();
        assert_eq!(mem.write_counts().0, 0, "a refused layout wrote memory");
        return;
    };
    assert!(size.is_power_of_two() && size <= max && size <= MAX_QUEUE_SIZE);
    mem.watch(0, layout, input.indirect, 0);
    let mut drv = Driver::new(layout);
    let mut held: Vec<Held> = Vec::new();
    let mut signalled: u16 = 0;
    let s64 = u64::from(size);
    let used_event_at = layout.avail_ring.0 + 4 + 2 * s64;
    let avail_event_at = layout.used_ring.0 + 4 + 8 * s64;

    for op in &input.ops {
        let broken_before = q.broken();
        let mut api_err: Option<QueueError> = None;
        match op {
            Op::Pop { small } => {
                // As the device does before each pop: hint the chain two
                // ahead (its decision checked by the recording memory's
                // probe, I-FUZZ-7), for writing with the small chain.
                q.prefetch_ahead(&mem, *small);
                let next_avail = q.next_avail();
                let mut big: DescriptorChain = DescriptorChain::new();
                let mut little: DescriptorChain<4> = DescriptorChain::new();
                let (r, walked, segs, limit) = if *small {
                    let r = q.pop(&mem, &mut little);
                    (
                        r,
                        little.descriptors_walked(),
                        little.segments().to_vec(),
                        4,
                    )
                } else {
                    let r = q.pop(&mem, &mut big);
                    (r, big.descriptors_walked(), big.segments().to_vec(), 64)
                };
                match r {
                    Ok(Some(p)) => {
                        let (h, why) = match p {
                            Popped::Chain(h) => (h, None),
                            Popped::Malformed(h, e) => (h, Some(e)),
                        };
                        let accepted = why.is_none();
                        assert_eq!(q.next_avail(), next_avail.wrapping_add(1));
                        let reference =
                            ref_walk(ram.mem(), &layout, input.indirect, h.index(), limit);
                        assert!(
                            walked <= u32::from(size) + reference.indirect_entries,
                            "walked {walked} descriptors, bound {size} + {}",
                            reference.indirect_entries
                        );
                        if accepted {
                            assert_eq!(reference.strict, Ok(()), "accepted a malformed chain");
                            let mine: Vec<(u64, u32, bool)> =
                                segs.iter().map(|s| (s.addr.0, s.len, s.writable)).collect();
                            assert_eq!(mine, reference.segs, "segments differ from the reference");
                            assert_eq!(walked, reference.walked, "walk counts differ");
                            crate::count(|c| c.chains += 1);
                        } else {
                            assert!(
                                reference.strict.is_err(),
                                "refused a well-formed chain ({why:?}): {reference:?}"
                            );
                        }
                        let chain = (accepted && !*small).then_some(big);
                        held.push(Held { head: h, chain });
                    }
                    Ok(None) => {
                        assert_eq!(q.next_avail(), next_avail);
                        let idx = u16_at(&ram, layout.avail_ring.0 + 2);
                        assert_eq!(idx, Some(next_avail), "Ok(None) with chains available");
                    }
                    Err(e) => api_err = Some(e),
                }
            }
            Op::AddUsed { pick: p, len } => {
                if let Some(i) = pick(&held, *p) {
                    let h = held.remove(i);
                    let before = q.next_used();
                    match q.add_used(&mem, h.head, *len) {
                        Ok(()) => assert_eq!(q.next_used(), before.wrapping_add(1)),
                        Err(e) => api_err = Some(e),
                    }
                }
            }
            Op::UndoPop => {
                if let Some(h) = held.pop() {
                    let before = q.next_avail();
                    match q.undo_pop(h.head) {
                        Ok(()) => assert_eq!(q.next_avail(), before.wrapping_sub(1)),
                        Err(head) => held.push(Held {
                            head,
                            chain: h.chain,
                        }),
                    }
                }
            }
            Op::UndoAny { pick: p } => {
                if let Some(i) = pick(&held, *p) {
                    let last = i + 1 == held.len();
                    let h = held.remove(i);
                    match q.undo_pop(h.head) {
                        Ok(()) => assert!(last, "undo_pop took back a head that was not the last"),
                        Err(head) => held.insert(
                            i,
                            Held {
                                head,
                                chain: h.chain,
                            },
                        ),
                    }
                }
            }
            Op::Publish => {
                if let Err(e) = q.publish_used(&mem) {
                    api_err = Some(e);
                }
            }
            Op::NeedsNotification => {
                let new = q.next_used();
                let old = signalled;
                match q.needs_notification(&mem) {
                    Ok(n) => {
                        let expect = if old == new {
                            false
                        } else if input.event_idx {
                            let ev = u16_at(&ram, used_event_at).expect("ring in RAM");
                            // used_event in [old, new - 1], modulo 2^16.
                            ev.wrapping_sub(old) < new.wrapping_sub(old)
                        } else {
                            u16_at(&ram, layout.avail_ring.0).expect("ring in RAM") & 1 == 0
                        };
                        assert_eq!(n, expect, "needs_notification old {old} new {new}");
                        signalled = new;
                    }
                    Err(e) => api_err = Some(e),
                }
            }
            Op::Enable => match (q.avail_idx_seen(), q.enable_notifications(&mem)) {
                (seen, Ok(pending)) => {
                    let idx = u16_at(&ram, layout.avail_ring.0 + 2).expect("ring in RAM");
                    if input.event_idx {
                        // The core's policy: a kick is asked for at the avail
                        // idx it last saw the driver publish (at or beyond
                        // next_avail; a driver that decrements avail idx can
                        // leave it beyond the current one, harmlessly).
                        let ev = u16_at(&ram, avail_event_at).expect("ring in RAM");
                        assert_eq!(ev, seen, "avail_event is the last avail idx seen");
                    } else {
                        assert_eq!(u16_at(&ram, layout.used_ring.0), Some(0));
                    }
                    assert_eq!(pending, idx != q.next_avail());
                }
                (_, Err(e)) => api_err = Some(e),
            },
            Op::Disable => match q.disable_notifications(&mem) {
                Ok(()) => {
                    if !input.event_idx {
                        assert_eq!(u16_at(&ram, layout.used_ring.0), Some(1));
                    }
                }
                Err(e) => api_err = Some(e),
            },
            Op::Write {
                pick: p,
                offset,
                len,
            } => {
                if let Some(c) = pick(&held, *p).and_then(|i| held[i].chain.as_ref()) {
                    let data = vec![0xa5u8; usize::from(*len)];
                    let n = c.write_at(&mem, usize::from(*offset), &data);
                    let room = (c.writable_len() as usize).saturating_sub(usize::from(*offset));
                    assert_eq!(n, Ok(usize::from(*len).min(room)));
                }
            }
            Op::Read {
                pick: p,
                offset,
                len,
            } => {
                if let Some(c) = pick(&held, *p).and_then(|i| held[i].chain.as_ref()) {
                    let mut data = vec![0u8; usize::from(*len)];
                    let n = c.read_at(&mem, usize::from(*offset), &mut data);
                    let room = (c.readable_len() as usize).saturating_sub(usize::from(*offset));
                    assert_eq!(n, Ok(usize::from(*len).min(room)));
                }
            }
            Op::Chain { bufs, indirect } => {
                drv.take_used(&ram);
                let bufs: Vec<_> = bufs
                    .iter()
                    .take(64)
                    .map(|b| (ram.addr(b.at), u32::from(b.len), b.writable))
                    .collect();
                let table = indirect.map(|a| ram.addr(a));
                drv.post(&ram, &bufs, table, 0);
            }
            Op::PushHead(h) => drv.push_head(&ram, *h),
            Op::PublishAvail => drv.publish(&ram),
            Op::SetAvailIdx(i) => drv.set_avail_idx(&ram, *i),
            Op::Desc(i, d) => {
                let at = layout.desc_table.0 + 16 * u64::from(*i % size);
                ram.poke(at, &d.bytes(&ram));
            }
            Op::Table(a, descs) => {
                let at = ram.addr(*a);
                for (i, d) in descs.iter().take(256).enumerate() {
                    ram.poke(at.wrapping_add(16 * i as u64), &d.bytes(&ram));
                }
            }
            Op::UsedEvent(v) => drv.set_used_event(&ram, *v),
            Op::AvailFlags(v) => drv.set_avail_flags(&ram, *v),
            Op::Scribble(a, b) => {
                ram.poke(ram.addr(*a), &b.0);
            }
            Op::SetIndices(a, u) => {
                q.set_indices(*a, *u);
                held.clear();
                mem.rebase(0, *u, true);
                signalled = *u;
                assert_eq!(q.in_flight(), 0);
            }
            Op::SyncUsed => match q.sync_used_from_ring(&mem) {
                Ok(()) => {
                    mem.rebase(0, q.next_used(), false);
                    signalled = q.next_used();
                }
                Err(e) => api_err = Some(e),
            },
            Op::Reset => {
                held.clear();
                // The driver re-initializes its rings.
                for a in [layout.avail_ring.0 + 2, layout.used_ring.0 + 2] {
                    ram.poke(a, &[0, 0]);
                }
                q = SplitQueue::new(layout, features, max, &mem).expect("same layout");
                mem.watch(0, layout, input.indirect, 0);
                drv = Driver::new(layout);
                signalled = 0;
            }
        }
        // A broken queue stays broken with the same error.
        if let Some(e) = broken_before {
            if let Some(got) = api_err {
                assert_eq!(got, e, "a broken queue changed its error");
            }
            if !matches!(op, Op::Reset) {
                assert_eq!(q.broken(), Some(e));
            }
        }
        if let Some(e) = api_err {
            assert_eq!(q.broken(), Some(e), "an error left the queue running");
            let mut c: DescriptorChain = DescriptorChain::new();
            assert_eq!(q.pop(&mem, &mut c), Err(e), "a broken queue popped");
        }
        assert!(q.in_flight() <= size, "in_flight {} > size", q.in_flight());
        if q.broken().is_none() {
            assert_eq!(
                usize::from(q.in_flight()),
                held.len(),
                "in_flight != heads held"
            );
        }
        mem.assert_clean();
    }
}
