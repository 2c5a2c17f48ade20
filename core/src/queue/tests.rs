//! Hostile-guest tests of the split queue (shared/research/hostile-guest.md
//! §(e), cases 1-4, 9-34, 36). Each test names the case and invariant it pins.

#![allow(unsafe_code)] // tests build RegionMemory over local buffers

use super::*;
use crate::mem::{Region, RegionMemory};
use crate::test_mem::{CountingMemory, TestMemory};
use crate::testing::TestDriver;
use crate::wire::{DescFlags, Descriptor};
use std::vec;
use std::vec::Vec;

const MEM: usize = 0x10000;
const RING: u64 = 0x1000;
const BUF: u64 = 0x8000;
const ALL: QueueFeatures = QueueFeatures {
    event_idx: false,
    indirect: true,
};

fn setup(mem: &TestMemory, size: u16, f: QueueFeatures) -> (TestDriver, SplitQueue) {
    let d = TestDriver::new(mem, RING, size).unwrap();
    let q = SplitQueue::new(d.layout, f, MAX_QUEUE_SIZE, mem).unwrap();
    (d, q)
}

fn pop_one(
    q: &mut SplitQueue,
    mem: &impl GuestMemory,
) -> (Result<Option<Popped>, QueueError>, DescriptorChain) {
    let mut c = DescriptorChain::new();
    let r = q.pop(mem, &mut c);
    (r, c)
}

fn malformed(r: Result<Option<Popped>, QueueError>) -> ChainError {
    match r {
        Ok(Some(Popped::Malformed(_, e))) => e,
        other => panic!("expected a malformed chain, got {other:?}"),
    }
}

// ---------------------------------------------------------------- layout

/// Case 1, I-QUEUE-1: sizes 0, 3, above the device maximum, above 32768.
#[test]
fn case01_bad_queue_sizes_are_refused_at_activation() {
    let mem = TestMemory::new(0, MEM);
    for (size, max) in [
        (0u16, 256u16),
        (3, 256),
        (512, 256),
        (65535, 65535),
        (40000, u16::MAX),
    ] {
        let l = QueueLayout {
            size,
            desc_table: GuestAddress(0),
            avail_ring: GuestAddress(0x100),
            used_ring: GuestAddress(0x200),
        };
        assert_eq!(
            SplitQueue::new(l, ALL, max, &mem).unwrap_err(),
            LayoutError::BadSize(size)
        );
    }
}

/// Case 2, I-QUEUE-1: alignment 16/2/4.
#[test]
fn case02_misaligned_rings_are_refused() {
    let mem = TestMemory::new(0, MEM);
    let ok = QueueLayout {
        size: 16,
        desc_table: GuestAddress(0x1000),
        avail_ring: GuestAddress(0x2000),
        used_ring: GuestAddress(0x3000),
    };
    assert!(SplitQueue::new(ok, ALL, 256, &mem).is_ok());
    let cases = [
        (
            QueueLayout {
                desc_table: GuestAddress(0x1008),
                ..ok
            },
            RingPart::DescTable,
        ),
        (
            QueueLayout {
                avail_ring: GuestAddress(0x2001),
                ..ok
            },
            RingPart::AvailRing,
        ),
        (
            QueueLayout {
                used_ring: GuestAddress(0x3002),
                ..ok
            },
            RingPart::UsedRing,
        ),
    ];
    for (l, part) in cases {
        assert_eq!(
            SplitQueue::new(l, ALL, 256, &mem).unwrap_err(),
            LayoutError::Misaligned(part)
        );
    }
}

/// Case 3, I-QUEUE-1: rings crossing the end of RAM, a hole, or wrapping u64.
#[test]
fn case03_rings_outside_memory_or_wrapping_are_refused() {
    let mem = TestMemory::new(0, MEM);
    let ok = QueueLayout {
        size: 16,
        desc_table: GuestAddress(0x1000),
        avail_ring: GuestAddress(0x2000),
        used_ring: GuestAddress(0x3000),
    };
    let end = QueueLayout {
        used_ring: GuestAddress(MEM as u64 - 0x40),
        ..ok
    };
    assert!(matches!(
        SplitQueue::new(end, ALL, 256, &mem),
        Err(LayoutError::OutsideMemory(RingPart::UsedRing, _))
    ));
    let wrap = QueueLayout {
        desc_table: GuestAddress(u64::MAX - 0xf),
        ..ok
    };
    assert_eq!(
        SplitQueue::new(wrap, ALL, 256, &mem).unwrap_err(),
        LayoutError::OutsideMemory(RingPart::DescTable, MemError::Overflow)
    );
    // A hole between two regions under the descriptor table.
    let mut a = vec![0u64; 0x200];
    let mut b = vec![0u64; 0x200];
    let mut rm = RegionMemory::<2>::new();
    // SAFETY: the buffers outlive `rm` and are not otherwise referenced meanwhile.
    unsafe {
        rm.add(Region::new(0, a.as_mut_ptr().cast(), a.len() * 8).unwrap())
            .unwrap();
        rm.add(Region::new(0x2000, b.as_mut_ptr().cast(), b.len() * 8).unwrap())
            .unwrap();
    }
    let hole = QueueLayout {
        size: 16,
        desc_table: GuestAddress(0xf80),
        avail_ring: GuestAddress(0x2000),
        used_ring: GuestAddress(0x2100),
    };
    assert!(matches!(
        SplitQueue::new(hole, ALL, 256, &rm),
        Err(LayoutError::OutsideMemory(RingPart::DescTable, _))
    ));
}

/// Case 4, I-QUEUE-1: a used ring overlapping the descriptor table.
#[test]
fn case04_used_ring_overlapping_the_descriptor_table_is_refused() {
    let mem = TestMemory::new(0, MEM);
    let l = QueueLayout {
        size: 16,
        desc_table: GuestAddress(0x1000),
        avail_ring: GuestAddress(0x2000),
        used_ring: GuestAddress(0x1080),
    };
    assert_eq!(
        SplitQueue::new(l, ALL, 256, &mem).unwrap_err(),
        LayoutError::Overlap(RingPart::DescTable, RingPart::UsedRing)
    );
}

// ---------------------------------------------------------------- avail ring

/// Case 9, I-QUEUE-3: avail idx too far ahead poisons the queue; later polls
/// return the same error without touching memory.
#[test]
fn case09_avail_idx_beyond_queue_size_poisons_the_queue() {
    let mem = TestMemory::new(0, MEM);
    let (d, mut q) = setup(&mem, 16, ALL);
    d.set_avail_idx(&mem, 17).unwrap();
    let err = QueueError::InvalidAvailIdx {
        avail_idx: 17,
        next_avail: 0,
    };
    assert_eq!(pop_one(&mut q, &mem).0, Err(err));
    assert_eq!(q.broken(), Some(err));
    let counting = CountingMemory::new(&mem);
    for _ in 0..1000 {
        assert_eq!(pop_one(&mut q, &counting).0, Err(err));
    }
    assert_eq!(
        counting.total_reads(),
        0,
        "a broken queue must not poll guest memory"
    );
    assert_eq!(
        q.add_used(
            &mem,
            Head {
                index: 0,
                avail_pos: 0
            },
            0
        ),
        Err(err)
    );
}

/// Case 10: a legal wrap of the 16-bit indices.
#[test]
fn case10_legal_index_wrap_yields_exactly_the_new_chains_in_order() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    q.set_indices(0xFFFE, 0xFFFE);
    d.avail_idx = 0xFFFE;
    d.set_avail_idx(&mem, 0xFFFE).unwrap();
    let mut heads = Vec::new();
    for i in 0..4u64 {
        heads.push(d.add_chain(&mem, &[(BUF + i * 64, 64, false)]).unwrap());
    }
    d.publish(&mem).unwrap();
    assert_eq!(d.avail_idx, 2);
    for h in heads {
        match pop_one(&mut q, &mem) {
            (Ok(Some(Popped::Chain(t))), _) => {
                assert_eq!(t.index(), h);
                q.add_used(&mem, t, 0).unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(pop_one(&mut q, &mem).0, Ok(None)));
    q.publish_used(&mem).unwrap();
    assert_eq!(d.used_idx(&mem).unwrap(), 2);
}

/// Case 11, I-QUEUE-3: a head index at or beyond the size.
#[test]
fn case11_head_out_of_range_poisons_the_queue() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    d.push_head(&mem, 16).unwrap();
    d.publish(&mem).unwrap();
    assert_eq!(pop_one(&mut q, &mem).0, Err(QueueError::InvalidHead(16)));
    assert!(q.broken().is_some());
}

/// Case 12, I-QUEUE-5: a head made available twice while in flight. Each pop
/// is completed exactly once; in flight never exceeds the size.
#[test]
fn case12_duplicate_in_flight_heads_never_exceed_the_queue_size() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 4, ALL);
    let h = d.add_chain(&mem, &[(BUF, 64, false)]).unwrap();
    for _ in 0..3 {
        d.push_head(&mem, h).unwrap();
    }
    d.publish(&mem).unwrap();
    let mut tokens = Vec::new();
    for _ in 0..4 {
        match pop_one(&mut q, &mem).0 {
            Ok(Some(Popped::Chain(t))) => tokens.push(t),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(q.in_flight(), 4);
    // The driver publishes one more while 4 (= size) are in flight.
    d.push_head(&mem, h).unwrap();
    d.publish(&mem).unwrap();
    assert_eq!(pop_one(&mut q, &mem).0, Err(QueueError::TooManyInFlight));
    assert!(q.in_flight() <= q.size());
}

/// Case 12 (cont.): each popped head is completed once, in pop order.
#[test]
fn case12_each_pop_completes_once() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 8, ALL);
    let h = d.add_chain(&mem, &[(BUF, 64, false)]).unwrap();
    d.push_head(&mem, h).unwrap();
    d.publish(&mem).unwrap();
    for _ in 0..2 {
        if let (Ok(Some(Popped::Chain(t))), _) = pop_one(&mut q, &mem) {
            q.add_used(&mem, t, 0).unwrap();
        } else {
            panic!()
        }
    }
    q.publish_used(&mem).unwrap();
    assert_eq!(d.pop_used(&mem).unwrap(), Some((h as u32, 0)));
    assert_eq!(d.pop_used(&mem).unwrap(), Some((h as u32, 0)));
    assert_eq!(d.pop_used(&mem).unwrap(), None);
    assert_eq!(q.in_flight(), 0);
}

/// Case 13, I-QUEUE-3: avail idx decremented.
#[test]
fn case13_avail_idx_moving_backwards_poisons_the_queue() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    for i in 0..3u64 {
        d.add_chain(&mem, &[(BUF + i * 64, 64, false)]).unwrap();
    }
    d.publish(&mem).unwrap();
    for _ in 0..3 {
        let (r, _) = pop_one(&mut q, &mem);
        let Ok(Some(Popped::Chain(t))) = r else {
            panic!()
        };
        q.add_used(&mem, t, 0).unwrap();
    }
    d.set_avail_idx(&mem, 1).unwrap();
    assert_eq!(
        pop_one(&mut q, &mem).0,
        Err(QueueError::InvalidAvailIdx {
            avail_idx: 1,
            next_avail: 3
        })
    );
}

/// Case 14: spurious kicks find nothing, each with O(1) guest reads.
#[test]
fn case14_spurious_kicks_do_constant_work() {
    let mem = TestMemory::new(0, MEM);
    let (_d, mut q) = setup(&mem, 256, ALL);
    let counting = CountingMemory::new(&mem);
    let kicks: usize = if cfg!(miri) { 1_000 } else { 1_000_000 };
    for _ in 0..kicks {
        assert!(matches!(pop_one(&mut q, &counting).0, Ok(None)));
    }
    assert_eq!(
        counting.total_reads(),
        kicks,
        "one avail-idx load per empty poll"
    );
}

/// Case 14 (device part's check): `has_available` costs one avail-idx load
/// on an idle ring and none while chains are known to be pending; it
/// validates the index like `pop` (case 9: more than `size` ahead breaks
/// the queue).
#[test]
fn case14_has_available_loads_avail_idx_only_when_idle() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    let counting = CountingMemory::new(&mem);
    assert_eq!(q.has_available(&counting), Ok(false));
    assert_eq!(counting.total_reads(), 1);
    d.add_chain(&mem, &[(BUF, 64, false)]).unwrap();
    d.publish(&mem).unwrap();
    assert_eq!(q.has_available(&counting), Ok(true));
    assert_eq!(q.has_available(&counting), Ok(true));
    assert_eq!(counting.total_reads(), 2, "pending: no new load");
    assert!(matches!(
        pop_one(&mut q, &mem).0,
        Ok(Some(Popped::Chain(_)))
    ));
    assert_eq!(q.has_available(&mem), Ok(false));
    d.set_avail_idx(&mem, 100).unwrap();
    assert!(matches!(
        q.has_available(&mem),
        Err(QueueError::InvalidAvailIdx { .. })
    ));
    assert!(q.broken().is_some());
}

/// Case 15 (queue part): pop does one chain's worth of work per call, so a
/// ring that is always full returns control to the caller after each chain.
#[test]
fn case15_pop_returns_after_one_chain_even_on_a_full_ring() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    for i in 0..16u64 {
        d.add_chain(&mem, &[(BUF + i * 64, 64, false)]).unwrap();
    }
    d.publish(&mem).unwrap();
    let counting = CountingMemory::new(&mem);
    let (r, c) = pop_one(&mut q, &counting);
    assert!(matches!(r, Ok(Some(Popped::Chain(_)))));
    assert_eq!(c.descriptors_walked(), 1);
    // avail idx + one ring entry + one descriptor.
    assert_eq!(counting.total_reads(), 3);
}

// ---------------------------------------------------------------- chains

fn raw_chain(mem: &TestMemory, d: &mut TestDriver, descs: &[(u16, Descriptor)], head: u16) {
    for (i, desc) in descs {
        d.write_desc(mem, *i, *desc).unwrap();
    }
    d.push_head(mem, head).unwrap();
    d.publish(mem).unwrap();
}

/// Case 16, I-QUEUE-4: a self-loop and a 3-cycle end with `Loop` after at
/// most `size` descriptors.
#[test]
fn case16_loops_are_refused_within_size_steps() {
    for cycle in [1u16, 3] {
        let mem = TestMemory::new(0, MEM);
        let (mut d, mut q) = setup(&mem, 16, ALL);
        let descs: Vec<_> = (0..cycle)
            .map(|i| (i, Descriptor::new(BUF, 8, DescFlags::NEXT, (i + 1) % cycle)))
            .collect();
        raw_chain(&mem, &mut d, &descs, 0);
        let (r, c) = pop_one(&mut q, &mem);
        assert_eq!(malformed(r), ChainError::Loop);
        assert!(c.descriptors_walked() <= 16);
    }
}

/// Case 17: a chain exactly `size` long is accepted.
#[test]
fn case17_chain_of_exactly_queue_size_is_accepted() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    let bufs: Vec<_> = (0..16u64).map(|i| (BUF + i * 16, 16, false)).collect();
    d.add_chain(&mem, &bufs).unwrap();
    d.publish(&mem).unwrap();
    let (r, c) = pop_one(&mut q, &mem);
    assert!(matches!(r, Ok(Some(Popped::Chain(_)))));
    assert_eq!(c.segments().len(), 16);
    assert_eq!(c.readable_len(), 256);
}

/// Case 18: `next == size`.
#[test]
fn case18_next_equal_to_size_is_refused() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    raw_chain(
        &mem,
        &mut d,
        &[(0, Descriptor::new(BUF, 8, DescFlags::NEXT, 16))],
        0,
    );
    assert_eq!(
        malformed(pop_one(&mut q, &mem).0),
        ChainError::NextOutOfRange(16)
    );
}

/// Case 19: `addr = 2^64 - 16, len = 32`.
#[test]
fn case19_buffer_wrapping_the_address_space_is_refused() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    raw_chain(
        &mem,
        &mut d,
        &[(0, Descriptor::new(u64::MAX - 15, 32, DescFlags::empty(), 0))],
        0,
    );
    assert_eq!(malformed(pop_one(&mut q, &mem).0), ChainError::AddrOverflow);
}

/// Case 20, I-MEM-1: a buffer ending on the last byte of RAM is accepted;
/// one byte further is refused (FC #1296, CH #2450).
#[test]
fn case20_buffer_ending_on_the_last_byte_is_accepted_one_more_refused() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    d.add_chain(&mem, &[(MEM as u64 - 100, 100, true)]).unwrap();
    d.add_chain(&mem, &[(MEM as u64 - 100, 101, true)]).unwrap();
    d.publish(&mem).unwrap();
    assert!(matches!(
        pop_one(&mut q, &mem).0,
        Ok(Some(Popped::Chain(_)))
    ));
    assert!(matches!(
        malformed(pop_one(&mut q, &mem).0),
        ChainError::OutsideMemory(_)
    ));
}

/// Case 21, I-MEM-2: a buffer across a hole is refused; across adjacent
/// regions it is one valid buffer and reads back correctly.
#[test]
fn case21_buffer_across_a_hole_is_refused_across_adjacent_regions_accepted() {
    for (gap, ok) in [(0x1000u64, false), (0, true)] {
        let mut a = vec![0u64; 0x800];
        let mut b = vec![0u64; 0x800];
        let mut rm = RegionMemory::<2>::new();
        // SAFETY: the buffers outlive `rm` and are not otherwise referenced meanwhile.
        unsafe {
            rm.add(Region::new(0, a.as_mut_ptr().cast(), a.len() * 8).unwrap())
                .unwrap();
            rm.add(Region::new(0x4000 + gap, b.as_mut_ptr().cast(), b.len() * 8).unwrap())
                .unwrap();
        }
        let mut d = TestDriver::new(&rm, 0x100, 16).unwrap();
        let mut q = SplitQueue::new(d.layout, ALL, 256, &rm).unwrap();
        let data: Vec<u8> = (0..64u8).collect();
        if ok {
            rm.write(GuestAddress(0x4000 - 32), &data).unwrap();
        }
        d.add_chain(&rm, &[(0x4000 - 32, 64, false)]).unwrap();
        d.publish(&rm).unwrap();
        let mut c = DescriptorChain::<8>::new();
        let r = q.pop(&rm, &mut c);
        if ok {
            assert!(matches!(r, Ok(Some(Popped::Chain(_)))));
            let mut back = [0u8; 64];
            assert_eq!(c.read_at(&rm, 0, &mut back).unwrap(), 64);
            assert_eq!(&back[..], &data[..]);
        } else {
            assert!(matches!(malformed(r), ChainError::OutsideMemory(_)));
        }
    }
}

/// Case 22: zero-length descriptors terminate and are not kept; an
/// all-zero chain has no bytes.
#[test]
fn case22_zero_length_descriptors_terminate_and_hold_no_bytes() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    d.add_chain(&mem, &[(BUF, 0, false), (BUF, 0, false), (BUF, 0, true)])
        .unwrap();
    d.add_chain(&mem, &[(BUF, 0, false), (BUF, 10, false), (BUF, 0, false)])
        .unwrap();
    d.publish(&mem).unwrap();
    let (r, c) = pop_one(&mut q, &mem);
    let Ok(Some(Popped::Chain(t))) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (c.segments().len(), c.readable_len(), c.writable_len()),
        (0, 0, 0)
    );
    assert_eq!(c.descriptors_walked(), 3);
    q.add_used(&mem, t, 0).unwrap();
    let (r, c) = pop_one(&mut q, &mem);
    assert!(matches!(r, Ok(Some(Popped::Chain(_)))));
    assert_eq!((c.segments().len(), c.readable_len()), (1, 10));
}

/// A memory that accepts any range above 4 GiB (nothing is read there) so
/// that huge lengths reach the length checks.
struct SparseMemory<'a>(&'a TestMemory);

impl GuestMemory for SparseMemory<'_> {
    fn read(&self, a: GuestAddress, d: &mut [u8]) -> Result<(), MemError> {
        self.0.read(a, d)
    }
    fn write(&self, a: GuestAddress, s: &[u8]) -> Result<(), MemError> {
        self.0.write(a, s)
    }
    fn check_range(&self, a: GuestAddress, len: u64) -> Result<(), MemError> {
        if a.0 >= 1 << 32 {
            Ok(())
        } else {
            self.0.check_range(a, len)
        }
    }
    fn load_u16_acquire(&self, a: GuestAddress) -> Result<u16, MemError> {
        self.0.load_u16_acquire(a)
    }
    fn store_u16_release(&self, a: GuestAddress, v: u16) -> Result<(), MemError> {
        self.0.store_u16_release(a, v)
    }
}

/// Case 23: a total length above `u32::MAX`.
#[test]
fn case23_total_length_above_u32_max_is_refused() {
    let mem = TestMemory::new(0, MEM);
    let sparse = SparseMemory(&mem);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    d.add_chain(&mem, &[(1 << 32, u32::MAX, false), (1 << 33, 1, false)])
        .unwrap();
    d.publish(&mem).unwrap();
    let mut c = DescriptorChain::<8>::new();
    assert_eq!(malformed(q.pop(&sparse, &mut c)), ChainError::TotalTooLarge);
    // Exactly `u32::MAX` in total, readable and writable, is a chain.
    d.add_chain(
        &mem,
        &[
            (1 << 32, u32::MAX - 2, false),
            (1 << 33, 1, false),
            (1 << 34, 1, true),
        ],
    )
    .unwrap();
    d.publish(&mem).unwrap();
    assert!(matches!(q.pop(&sparse, &mut c), Ok(Some(Popped::Chain(_)))));
    assert_eq!(c.readable_len(), u32::MAX - 1);
    assert_eq!(c.writable_len(), 1);
}

/// Case 24: a readable descriptor after a writable one.
#[test]
fn case24_readable_after_writable_is_refused() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    d.add_chain(&mem, &[(BUF, 8, true), (BUF + 8, 8, false)])
        .unwrap();
    d.publish(&mem).unwrap();
    assert_eq!(
        malformed(pop_one(&mut q, &mem).0),
        ChainError::ReadableAfterWritable
    );
}

/// Case 25: unknown descriptor flag bits are refused (documented policy:
/// a driver only sets bits of negotiated features, and none of the split
/// ring's other bits exist).
#[test]
fn case25_unknown_descriptor_flags_are_refused() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    let mut desc = Descriptor::new(BUF, 8, DescFlags::empty(), 0);
    desc.flags.set(0x80);
    raw_chain(&mem, &mut d, &[(0, desc)], 0);
    assert_eq!(
        malformed(pop_one(&mut q, &mem).0),
        ChainError::UnknownFlags(0x80)
    );
}

/// Case 26: INDIRECT without the feature.
#[test]
fn case26_indirect_without_the_feature_is_refused() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(
        &mem,
        16,
        QueueFeatures {
            event_idx: false,
            indirect: false,
        },
    );
    d.add_indirect(&mem, 0x6000, &[(BUF, 8, false)]).unwrap();
    d.publish(&mem).unwrap();
    assert_eq!(
        malformed(pop_one(&mut q, &mem).0),
        ChainError::IndirectNotNegotiated
    );
}

/// Case 27: indirect table of length 0, not a multiple of 16, more than
/// 65535 entries, or outside RAM.
#[test]
fn case27_bad_indirect_table_lengths_and_addresses_are_refused() {
    type Check = fn(ChainError) -> bool;
    let cases: [(u64, u32, Check); 4] = [
        (0x6000, 0, |e| e == ChainError::BadIndirectLen(0)),
        (0x6000, 24, |e| e == ChainError::BadIndirectLen(24)),
        (0x6000, 16 * 65536, |e| {
            e == ChainError::BadIndirectLen(16 * 65536)
        }),
        (MEM as u64 - 16, 32, |e| {
            matches!(e, ChainError::OutsideMemory(_))
        }),
    ];
    for (addr, len, check) in cases {
        let mem = TestMemory::new(0, MEM);
        let (mut d, mut q) = setup(&mem, 16, ALL);
        raw_chain(
            &mem,
            &mut d,
            &[(0, Descriptor::new(addr, len, DescFlags::INDIRECT, 0))],
            0,
        );
        let e = malformed(pop_one(&mut q, &mem).0);
        assert!(check(e), "{addr:#x} {len}: {e:?}");
    }
}

/// Case 28: INDIRECT with NEXT, and nested INDIRECT.
#[test]
fn case28_indirect_with_next_and_nested_indirect_are_refused() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    raw_chain(
        &mem,
        &mut d,
        &[(
            0,
            Descriptor::new(0x6000, 16, DescFlags::INDIRECT | DescFlags::NEXT, 1),
        )],
        0,
    );
    assert_eq!(
        malformed(pop_one(&mut q, &mem).0),
        ChainError::IndirectWithNext
    );

    mem.write_obj(
        GuestAddress(0x6000),
        &Descriptor::new(0x7000, 16, DescFlags::INDIRECT, 0),
    )
    .unwrap();
    raw_chain(
        &mem,
        &mut d,
        &[(1, Descriptor::new(0x6000, 16, DescFlags::INDIRECT, 0))],
        1,
    );
    assert_eq!(
        malformed(pop_one(&mut q, &mem).0),
        ChainError::NestedIndirect
    );
}

/// Case 29 (vm-virtio #220): direct descriptors followed by one indirect,
/// an unaligned table, WRITE on the table descriptor: all accepted.
#[test]
fn case29_direct_then_indirect_unaligned_table_and_write_flag_are_accepted() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    let table = 0x6003u64; // unaligned
    mem.write_obj(
        GuestAddress(table),
        &Descriptor::new(BUF + 100, 50, DescFlags::WRITE | DescFlags::NEXT, 1),
    )
    .unwrap();
    mem.write_obj(
        GuestAddress(table + 16),
        &Descriptor::new(BUF + 200, 60, DescFlags::WRITE, 0),
    )
    .unwrap();
    raw_chain(
        &mem,
        &mut d,
        &[
            (0, Descriptor::new(BUF, 12, DescFlags::NEXT, 1)),
            (
                1,
                Descriptor::new(table, 32, DescFlags::INDIRECT | DescFlags::WRITE, 0),
            ),
        ],
        0,
    );
    let (r, c) = pop_one(&mut q, &mem);
    assert!(matches!(r, Ok(Some(Popped::Chain(_)))), "{r:?}");
    assert_eq!((c.readable_len(), c.writable_len()), (12, 110));
    assert_eq!(c.writable().len(), 2);
}

/// Case 30, I-QUEUE-4: a loop inside an indirect table, or next beyond it.
#[test]
fn case30_indirect_loops_and_out_of_table_next_are_bounded_errors() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    for i in 0..4u64 {
        let next = ((i + 1) % 4) as u16;
        mem.write_obj(
            GuestAddress(0x6000 + 16 * i),
            &Descriptor::new(BUF, 8, DescFlags::NEXT, next),
        )
        .unwrap();
    }
    raw_chain(
        &mem,
        &mut d,
        &[(0, Descriptor::new(0x6000, 64, DescFlags::INDIRECT, 0))],
        0,
    );
    let (r, c) = pop_one(&mut q, &mem);
    assert_eq!(malformed(r), ChainError::Loop);
    assert!(c.descriptors_walked() <= 1 + 4);

    mem.write_obj(
        GuestAddress(0x6030),
        &Descriptor::new(BUF, 8, DescFlags::NEXT, 4),
    )
    .unwrap();
    raw_chain(
        &mem,
        &mut d,
        &[(1, Descriptor::new(0x6000, 64, DescFlags::INDIRECT, 0))],
        1,
    );
    assert_eq!(
        malformed(pop_one(&mut q, &mem).0),
        ChainError::NextOutOfRange(4)
    );
}

/// Case 31, I-QUEUE-2: every descriptor is fetched exactly once, so a guest
/// that changes it after the first read cannot change what was validated.
#[test]
fn case31_each_descriptor_is_read_exactly_once() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    d.add_chain(
        &mem,
        &[
            (BUF, 10, false),
            (BUF + 10, 20, false),
            (BUF + 30, 30, true),
        ],
    )
    .unwrap();
    mem.write_obj(
        GuestAddress(0x6000),
        &Descriptor::new(BUF + 100, 40, DescFlags::WRITE, 0),
    )
    .unwrap();
    d.add_chain(&mem, &[(BUF + 60, 5, false)]).unwrap();
    raw_chain(
        &mem,
        &mut d,
        &[(4, Descriptor::new(0x6000, 16, DescFlags::INDIRECT, 0))],
        4,
    );
    d.publish(&mem).unwrap();
    let mut counting = CountingMemory::new(&mem);
    counting.flip_on_second_read = true;
    let mut lens = Vec::new();
    while let Ok(Some(p)) = {
        let mut c = DescriptorChain::<8>::new();
        let r = q.pop(&counting, &mut c);
        lens.push((c.readable_len(), c.writable_len()));
        r
    } {
        let Popped::Chain(t) = p else { panic!("{p:?}") };
        q.add_used(&mem, t, 0).unwrap();
    }
    assert_eq!(&lens[..3], &[(30, 30), (5, 0), (0, 40)]);
    for (addr, n) in counting.reads.borrow().iter() {
        let is_desc = (RING..RING + 16 * 16).contains(addr) || (0x6000..0x6010).contains(addr);
        if is_desc {
            assert_eq!(*n, 1, "descriptor at {addr:#x} read {n} times");
        }
    }
}

// ---------------------------------------------------------------- completion

/// Case 32, I-QUEUE-9: the used element (with its len) is written before the
/// used idx, and idx only moves on publish.
#[test]
fn case32_used_len_is_written_before_the_used_idx_moves() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    let h = d.add_chain(&mem, &[(BUF, 100, true)]).unwrap();
    d.publish(&mem).unwrap();
    let (r, _) = pop_one(&mut q, &mem);
    let Ok(Some(Popped::Chain(t))) = r else {
        panic!()
    };
    let log = CountingMemory::new(&mem);
    q.add_used(&log, t, 72).unwrap();
    assert_eq!(d.used_idx(&mem).unwrap(), 0, "not visible before publish");
    q.publish_used(&log).unwrap();
    let used = d.layout.used_ring.0;
    let mut elem = (h as u32).to_le_bytes().to_vec();
    elem.extend_from_slice(&72u32.to_le_bytes());
    assert_eq!(
        *log.writes.borrow(),
        [(used + 4, elem, false), (used + 2, vec![1, 0], true)],
        "the element, then the index with release"
    );
    assert_eq!(d.pop_used(&mem).unwrap(), Some((h as u32, 72)));
}

/// I-QUEUE-12: used elements are batched: written `USED_BATCH` at a time in
/// one copy each (two when a batch wraps at the ring's end), the last
/// partial batch at publish, then the index; the driver reads every one, in
/// order.
#[test]
fn used_elements_are_written_in_batches_and_wrap_at_the_ring_end() {
    use super::split::USED_BATCH;
    const SIZE: u16 = 64;
    // The copies a round of `n` completions starting at ring slot `start`
    // must make: (offset in the used ring, bytes, release store).
    let model = |start: usize, n: usize| {
        let mut out = Vec::new();
        let (mut pos, mut left) = (start, n);
        while left > 0 {
            let k = left.min(USED_BATCH);
            let slot = pos % usize::from(SIZE);
            let a = k.min(usize::from(SIZE) - slot);
            out.push((4 + 8 * slot as u64, 8 * a, false));
            if k > a {
                out.push((4, 8 * (k - a), false));
            }
            pos += k;
            left -= k;
        }
        out.push((2, 2, true));
        out
    };
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, SIZE, ALL);
    let log = CountingMemory::new(&mem);
    let mut start = 0usize;
    // 60 first, so that a batch of the next round wraps at the ring's end.
    for round in [60usize, 10, 40, 3] {
        for i in 0..round {
            d.add_chain(&mem, &[(BUF + 64 * (i as u64 % 64), 64, true)])
                .unwrap();
        }
        d.publish(&mem).unwrap();
        log.writes.borrow_mut().clear();
        let mut expect = Vec::new();
        for i in 0..round {
            let (r, _) = pop_one(&mut q, &mem);
            let Ok(Some(Popped::Chain(t))) = r else {
                panic!("pop {i}")
            };
            expect.push((t.index() as u32, i as u32));
            q.add_used(&log, t, i as u32).unwrap();
        }
        q.publish_used(&log).unwrap();
        let writes: Vec<(u64, usize, bool)> = log
            .writes
            .borrow()
            .iter()
            .map(|(a, b, r)| (*a - d.layout.used_ring.0, b.len(), *r))
            .collect();
        assert_eq!(writes, model(start, round), "round of {round}");
        for &(id, len) in &expect {
            assert_eq!(d.pop_used(&mem).unwrap(), Some((id, len)));
        }
        assert_eq!(d.pop_used(&mem).unwrap(), None);
        start += round;
    }
}

/// I-QUEUE-12, hostile driver: a driver that re-posts heads it never
/// reclaimed lets the device complete more chains than the ring holds before
/// one publish. Every completion is written once, inside the used ring,
/// before the avail slot it came from is read again (the slots end holding
/// the last `size` elements, as element-by-element writes would leave them).
#[test]
fn more_completions_than_ring_slots_stay_inside_the_used_ring() {
    // Used elements written: every plain write is elements here.
    fn elements_written(log: &CountingMemory<'_, TestMemory>) -> usize {
        log.writes
            .borrow()
            .iter()
            .filter(|w| !w.2)
            .map(|w| w.1.len() / 8)
            .sum()
    }
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 4, ALL);
    let log = CountingMemory::new(&mem);
    let mut heads = Vec::new();
    for i in 0..4u64 {
        heads.push(d.add_chain(&mem, &[(BUF + 64 * i, 64, true)]).unwrap());
    }
    d.publish(&mem).unwrap();
    let mut len = 0u32;
    for round in 0..3 {
        if round > 0 {
            // The same heads again, not reclaimed: the driver overruns.
            for &h in &heads {
                d.push_head(&mem, h).unwrap();
            }
            d.publish(&mem).unwrap();
        }
        for i in 0..4 {
            let (r, _) = pop_one(&mut q, &log);
            let Ok(Some(Popped::Chain(t))) = r else {
                panic!("pop")
            };
            if i == 0 {
                // The previous rounds' completions were written before an
                // avail slot they came from was read again, each once.
                assert_eq!(elements_written(&log), 4 * round, "round {round}");
            }
            len += 1;
            q.add_used(&log, t, len).unwrap();
        }
    }
    q.publish_used(&log).unwrap();
    let used = d.layout.used_ring.0;
    let elems = used + 4..used + 4 + 4 * 8;
    for (a, b, release) in log.writes.borrow().iter() {
        let end = *a + b.len() as u64;
        assert!(
            (*release && *a == used + 2) || (elems.contains(a) && end <= elems.end),
            "write at used+{}..+{} outside the used elements",
            a - used,
            end - used
        );
    }
    assert_eq!(d.used_idx(&mem).unwrap(), 12);
    assert_eq!(elements_written(&log), 12);
    // Slots hold the last round's elements (lens 9..=12).
    for (slot, want) in (0..4u64).zip(9u32..) {
        let e: crate::wire::UsedElem = mem.read_obj(GuestAddress(used + 4 + 8 * slot)).unwrap();
        assert_eq!(e.len.get(), want, "slot {slot}");
    }
}

/// Case 33, I-QUEUE-6: many malformed chains: each head comes back once with
/// len 0; nothing accumulates.
#[test]
fn case33_malformed_chains_are_each_returned_once_with_len_zero() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    let rounds: u32 = if cfg!(miri) { 500 } else { 100_000 };
    for i in 0..rounds {
        let h = (i % 16) as u16;
        d.write_desc(&mem, h, Descriptor::new(BUF, 8, DescFlags::NEXT, 99))
            .unwrap();
        d.push_head(&mem, h).unwrap();
        d.publish(&mem).unwrap();
        let (r, _) = pop_one(&mut q, &mem);
        let Ok(Some(Popped::Malformed(t, ChainError::NextOutOfRange(99)))) = r else {
            panic!("{r:?}")
        };
        q.add_used(&mem, t, 0).unwrap();
        q.publish_used(&mem).unwrap();
        assert_eq!(d.pop_used(&mem).unwrap(), Some((h as u32, 0)));
        assert_eq!(q.in_flight(), 0);
    }
}

/// Case 34, I-QUEUE-8: with EVENT_IDX, notify exactly when used_event lies in
/// [old, new - 1] (mod 2^16), swept across the wrap.
#[test]
fn case34_event_idx_notification_matches_the_window_across_the_wrap() {
    let mem = TestMemory::new(0, MEM);
    let f = QueueFeatures {
        event_idx: true,
        indirect: false,
    };
    let (mut d, mut q) = setup(&mem, 4, f);
    let step = if cfg!(miri) { 4099 } else { 1 };
    for old in [0xFFFCu16, 0xFFFF, 0, 3] {
        for added in 1..=3u16 {
            for event in (0..=u16::MAX).step_by(step) {
                q.set_indices(old, old);
                d.avail_idx = old;
                for _ in 0..added {
                    d.add_chain(&mem, &[(BUF, 8, false)]).unwrap();
                }
                d.publish(&mem).unwrap();
                for _ in 0..added {
                    let (r, _) = pop_one(&mut q, &mem);
                    let Ok(Some(Popped::Chain(t))) = r else {
                        panic!("{r:?}")
                    };
                    q.add_used(&mem, t, 0).unwrap();
                }
                q.publish_used(&mem).unwrap();
                d.set_used_event(&mem, event).unwrap();
                let new = old.wrapping_add(added);
                let in_window = event.wrapping_sub(old) < new.wrapping_sub(old);
                assert_eq!(
                    q.needs_notification(&mem).unwrap(),
                    in_window,
                    "old {old} new {new} event {event}"
                );
                assert!(
                    !q.needs_notification(&mem).unwrap(),
                    "nothing new, no notification"
                );
            }
        }
    }
}

#[test]
fn vring_need_event_matches_its_definition_exhaustively_near_the_wrap() {
    for old in [0xFFF0u16, 0xFFFF, 0, 1] {
        for n in 0..40u16 {
            let new = old.wrapping_add(n);
            for e in 0..64u16 {
                let event = old.wrapping_sub(8).wrapping_add(e);
                let expected = event.wrapping_sub(old) < n;
                assert_eq!(vring_need_event(event, new, old), expected);
            }
        }
    }
}

/// §2.7.7.2 without EVENT_IDX: notify unless NO_INTERRUPT is set.
#[test]
fn no_interrupt_flag_suppresses_notifications_without_event_idx() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 4, ALL);
    for flags in [0u16, 1] {
        d.set_avail_flags(&mem, flags).unwrap();
        d.add_chain(&mem, &[(BUF, 8, false)]).unwrap();
        d.publish(&mem).unwrap();
        let (r, _) = pop_one(&mut q, &mem);
        let Ok(Some(Popped::Chain(t))) = r else {
            panic!()
        };
        q.add_used(&mem, t, 0).unwrap();
        q.publish_used(&mem).unwrap();
        assert_eq!(q.needs_notification(&mem).unwrap(), flags == 0);
    }
}

/// §2.7.10: the device's own suppression: NO_NOTIFY flag or avail_event,
/// and re-enabling reports buffers that arrived meanwhile.
#[test]
fn device_notification_suppression_and_reenable_race() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 8, ALL);
    q.disable_notifications(&mem).unwrap();
    assert_eq!(d.used_flags(&mem).unwrap(), 1);
    d.add_chain(&mem, &[(BUF, 8, false)]).unwrap();
    d.publish(&mem).unwrap();
    assert!(
        q.enable_notifications(&mem).unwrap(),
        "a buffer is already there"
    );
    assert_eq!(d.used_flags(&mem).unwrap(), 0);

    let mem2 = TestMemory::new(0, MEM);
    let (mut d2, mut q2) = setup(
        &mem2,
        8,
        QueueFeatures {
            event_idx: true,
            indirect: false,
        },
    );
    d2.add_chain(&mem2, &[(BUF, 8, false)]).unwrap();
    d2.publish(&mem2).unwrap();
    let (r, _) = pop_one(&mut q2, &mem2);
    let Ok(Some(Popped::Chain(t))) = r else {
        panic!()
    };
    q2.add_used(&mem2, t, 0).unwrap();
    assert!(!q2.enable_notifications(&mem2).unwrap());
    assert_eq!(d2.avail_event(&mem2).unwrap(), 1);
}

/// undo_pop gives back heads in reverse order only.
#[test]
fn undo_pop_is_lifo_and_restores_the_queue() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 8, ALL);
    let h0 = d.add_chain(&mem, &[(BUF, 8, true)]).unwrap();
    let h1 = d.add_chain(&mem, &[(BUF, 8, true)]).unwrap();
    d.publish(&mem).unwrap();
    let Ok(Some(Popped::Chain(t0))) = pop_one(&mut q, &mem).0 else {
        panic!()
    };
    let Ok(Some(Popped::Chain(t1))) = pop_one(&mut q, &mem).0 else {
        panic!()
    };
    let t0 = q.undo_pop(t0).unwrap_err();
    q.undo_pop(t1).unwrap();
    q.undo_pop(t0).unwrap();
    assert_eq!((q.in_flight(), q.next_avail()), (0, 0));
    let Ok(Some(Popped::Chain(a))) = pop_one(&mut q, &mem).0 else {
        panic!()
    };
    let Ok(Some(Popped::Chain(b))) = pop_one(&mut q, &mem).0 else {
        panic!()
    };
    assert_eq!((a.index(), b.index()), (h0, h1));
}

// ---------------------------------------------------------------- header

/// Case 36 (CVE-2022-2132): a header split across 3+ descriptors, and
/// the payload after it, read back exactly.
#[test]
fn case36_header_split_across_many_descriptors_is_read_exactly() {
    use crate::wire::VirtioNetHdr;
    use zerocopy::FromBytes;
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 16, ALL);
    let bytes: Vec<u8> = (0..80u8).collect();
    mem.write(GuestAddress(BUF), &bytes).unwrap();
    // 12-byte header over 1 + 4 + 3 + 4 bytes, then 68 payload bytes.
    let splits = [(0u64, 1u32), (1, 4), (5, 3), (8, 4), (12, 68)];
    let bufs: Vec<_> = splits.iter().map(|&(o, l)| (BUF + o, l, false)).collect();
    d.add_chain(&mem, &bufs).unwrap();
    d.publish(&mem).unwrap();
    let (r, c) = pop_one(&mut q, &mem);
    assert!(matches!(r, Ok(Some(Popped::Chain(_)))));
    let mut h = [0u8; 12];
    assert_eq!(c.read_at(&mem, 0, &mut h).unwrap(), 12);
    let hdr = VirtioNetHdr::read_from_bytes(&h).unwrap();
    assert_eq!(hdr.flags, 0);
    assert_eq!(hdr.gso_type, 1);
    assert_eq!(hdr.hdr_len.get(), u16::from_le_bytes([2, 3]));
    let mut payload = [0u8; 68];
    assert_eq!(c.read_at(&mem, 12, &mut payload).unwrap(), 68);
    assert_eq!(&payload[..], &bytes[12..]);
    let mut tail = [0u8; 10];
    assert_eq!(
        c.read_at(&mem, 75, &mut tail).unwrap(),
        5,
        "short read at the end"
    );
}

/// I-QUEUE-7: writes only land in writable segments.
#[test]
fn write_at_only_touches_writable_segments() {
    let buf;
    {
        let mem = TestMemory::new(0, MEM);
        let (mut d, mut q) = setup(&mem, 16, ALL);
        d.add_chain(
            &mem,
            &[
                (BUF, 16, false),
                (BUF + 100, 10, true),
                (BUF + 200, 10, true),
            ],
        )
        .unwrap();
        d.publish(&mem).unwrap();
        let (r, c) = pop_one(&mut q, &mem);
        assert!(matches!(r, Ok(Some(Popped::Chain(_)))));
        assert_eq!(c.write_at(&mem, 5, &[0xAA; 30]).unwrap(), 15);
        buf = mem.bytes(0, MEM);
    }
    let b = BUF as usize;
    assert!(buf[b..b + 16].iter().all(|&x| x == 0));
    assert!(buf[b + 100..b + 105].iter().all(|&x| x == 0));
    assert!(buf[b + 105..b + 110].iter().all(|&x| x == 0xAA));
    assert!(buf[b + 200..b + 210].iter().all(|&x| x == 0xAA));
    assert!(buf[b + 210..b + 220].iter().all(|&x| x == 0));
}

/// I-QUEUE-7: `write_array` writes all of its bytes or, when they do not
/// fit the writable part, none; across segments too.
#[test]
fn write_array_writes_all_or_nothing() {
    let buf;
    {
        let mem = TestMemory::new(0, MEM);
        let (mut d, mut q) = setup(&mem, 16, ALL);
        d.add_chain(&mem, &[(BUF, 8, true), (BUF + 100, 6, true)])
            .unwrap();
        d.publish(&mem).unwrap();
        let (r, c) = pop_one(&mut q, &mem);
        assert!(matches!(r, Ok(Some(Popped::Chain(_)))));
        assert!(c.write_array(&mem, 0, &[0xAA; 4]), "inside the first");
        assert!(c.write_array(&mem, 2, &[0xBB; 12]), "across both");
        assert!(!c.write_array(&mem, 3, &[0xCC; 12]), "one byte too many");
        assert!(!c.write_array(&mem, 20, &[0xCC; 1]));
        buf = mem.bytes(0, MEM);
    }
    let b = BUF as usize;
    assert_eq!(
        &buf[b..b + 8],
        &[0xAA, 0xAA, 0xBB, 0xBB, 0xBB, 0xBB, 0xBB, 0xBB]
    );
    assert_eq!(&buf[b + 100..b + 106], &[0xBB; 6]);
    assert!(!buf.contains(&0xCC), "nothing of the refused writes");
}

/// I-QUEUE-7: `read_at` and `write_at` at every offset and length over a
/// chain of three readable and three writable segments (one range per
/// call, inside the first, inside a later one, across several, past the
/// end) read and write exactly the bytes a flat copy of the chain would:
/// the one-segment paths and the piecewise path agree at every boundary.
#[test]
fn read_at_and_write_at_match_a_flat_copy_at_every_offset() {
    const R: [(u64, u32); 3] = [(0, 5), (40, 7), (80, 16)];
    const W: [(u64, u32); 3] = [(200, 3), (240, 12), (280, 9)];
    let total = |segs: &[(u64, u32)]| segs.iter().map(|s| s.1 as usize).sum::<usize>();
    let flat: Vec<u8> = (1..=total(&R) as u8).collect();
    for off in 0..=total(&R) + 2 {
        for len in 0..=total(&R) + 2 - off {
            let mem = TestMemory::new(0, MEM);
            let (mut d, mut q) = setup(&mem, 16, ALL);
            let mut bufs: Vec<_> = R.iter().map(|&(o, l)| (BUF + o, l, false)).collect();
            bufs.extend(W.iter().map(|&(o, l)| (BUF + o, l, true)));
            d.add_chain(&mem, &bufs).unwrap();
            d.publish(&mem).unwrap();
            let mut at = 0usize;
            for &(o, l) in &R {
                mem.write(GuestAddress(BUF + o), &flat[at..at + l as usize])
                    .unwrap();
                at += l as usize;
            }
            let (r, c) = pop_one(&mut q, &mem);
            assert!(matches!(r, Ok(Some(Popped::Chain(_)))));
            let mut got = vec![0u8; len];
            let n = c.read_at(&mem, off, &mut got).unwrap();
            let want = &flat[off.min(flat.len())..(off + len).min(flat.len())];
            assert_eq!(&got[..n], want, "read {len} at {off}");

            // The same range written: the bytes land where a flat copy
            // would put them, nothing else in the buffers moves.
            let src: Vec<u8> = (0..len).map(|i| 0x80 | i as u8).collect();
            let wn = c.write_at(&mem, off, &src).unwrap();
            assert_eq!(
                wn,
                len.min(total(&W).saturating_sub(off)),
                "write {len} at {off}"
            );
            let mut written = Vec::new();
            for &(o, l) in &W {
                written.extend(mem.bytes(BUF + o, l as usize));
            }
            let mut want = vec![0u8; total(&W)];
            for (i, b) in src.iter().take(wn).enumerate() {
                want[off + i] = *b;
            }
            assert_eq!(written, want, "write {len} at {off}");
        }
    }
}

// ---------------------------------------------------------------- prefetch hints

/// I-QUEUE-11: `prefetch_ahead` is a hint. With garbage in the avail ring
/// (a head out of range) and descriptors pointing outside memory, it
/// neither fails, nor poisons the queue, nor changes what `pop` returns;
/// `pop` then reports exactly what it reports without the hint.
#[test]
fn prefetch_hints_on_garbage_change_nothing() {
    let outcome = |hint: bool| {
        let mem = TestMemory::new(0, MEM);
        let (mut d, mut q) = setup(&mem, 16, ALL);
        // Three good chains first: a hint looks two chains past the one
        // about to be popped, and only once `pop` has read the avail idx,
        // so the hints of pops 1 and 2 fall on the garbage.
        for i in 0..3u64 {
            d.add_chain(&mem, &[(BUF + i * 64, 64, false)]).unwrap();
        }
        // A descriptor whose buffer lies far outside guest memory.
        raw_chain(
            &mem,
            &mut d,
            &[(5, Descriptor::new(u64::MAX - 8, 64, DescFlags::empty(), 0))],
            5,
        );
        d.push_head(&mem, 16).unwrap(); // out of range
        d.publish(&mem).unwrap();
        let counting = CountingMemory::new(&mem);
        let mut seen = Vec::new();
        for _ in 0..6 {
            if hint {
                q.prefetch_ahead(&counting, false);
                q.prefetch_ahead(&counting, true);
            }
            let (r, c) = pop_one(&mut q, &mem);
            seen.push((std::format!("{r:?}"), c.segments().to_vec(), q.broken()));
        }
        // The hints did read the garbage: the bad descriptor (slot 5) and
        // the avail entry holding the out-of-range head (position 4).
        let reads = counting.reads.borrow();
        let desc5 = d.layout.desc_table.0 + 5 * 16;
        let entry4 = d.layout.avail_ring.0 + 4 + 4 * 2;
        let hinted = reads.contains_key(&desc5) && reads.contains_key(&entry4);
        (seen, hinted)
    };
    let (plain, hinted_plain) = outcome(false);
    let (with_hints, hinted) = outcome(true);
    assert!(!hinted_plain && hinted, "the hints reached the garbage");
    assert_eq!(with_hints, plain);
    assert_eq!(plain[4].2, Some(QueueError::InvalidHead(16)));
}

/// I-QUEUE-11: a hint reads one avail entry and one descriptor, never the
/// avail idx (the one `pop` read is used), whatever the ring holds.
#[test]
fn prefetch_hints_are_bounded() {
    let mem = TestMemory::new(0, MEM);
    let (mut d, mut q) = setup(&mem, 256, ALL);
    for i in 0..200u64 {
        d.add_chain(&mem, &[(BUF + i * 16, 16, false)]).unwrap();
    }
    d.publish(&mem).unwrap();
    let counting = CountingMemory::new(&mem);
    // Before any pop the avail idx is unknown: no hint, no read.
    q.prefetch_ahead(&counting, false);
    assert_eq!(counting.total_reads(), 0);
    let (r, _) = pop_one(&mut q, &mem);
    assert!(matches!(r, Ok(Some(Popped::Chain(_)))));
    // One avail entry, one descriptor.
    q.prefetch_ahead(&counting, false);
    let first = counting.total_reads();
    assert_eq!(first, 2, "{first} reads");
    q.prefetch_ahead(&counting, true);
    assert_eq!(counting.total_reads() - first, 2);
    assert_eq!(q.in_flight(), 1, "a hint pops nothing");
    assert_eq!(q.next_avail(), 1);
}
