//! Regression tests from fuzzing (specs/09-fuzzing.md), and the fuzz
//! targets' recording memory wrapper under the core's test runner (and
//! Miri): the wrapper is the write oracle of the `queue`, `tx`, `rx` and
//! `mmio` targets, so it is tested here for catching what it must catch and
//! for passing what the device legitimately does.
//!
//! Every crash, hang or oracle failure a fuzz target ever finds in the core
//! gets a test here, named after the target and what went wrong; its input
//! also stays in `fuzz/corpus/<target>/`.

use crate::device::{
    Backend, BackendError, NetConfig, NetDevice, NoInterceptor, Notifier, RxFrame, RX_QUEUE,
    TX_QUEUE,
};
use crate::features::Features;
use crate::mem::{ChainHint, GuestAddress, GuestMemory, MemError};
use crate::pool::FramePool;
use crate::queue::{DescriptorChain, Popped, QueueFeatures, QueueLayout, SplitQueue, Virtqueue};
use crate::test_mem::TestMemory;
use crate::testing::TestDriver;
use crate::wire::NetHdrRepr;
use std::collections::VecDeque;
use std::vec;

// Shared with the fuzz targets, which use more of it than these tests.
#[allow(dead_code)]
#[path = "../../fuzz/common/recording.rs"]
mod recording;

use recording::{ref_walk, RecordingMemory};

const MEM: usize = 0x20000;
const RING: u64 = 0x1000;
const BUF: u64 = 0x8000;

#[derive(Default)]
struct Frames {
    to_guest: VecDeque<usize>,
    sent: usize,
}

impl Backend for Frames {
    fn transmit(&mut self, _hdr: &NetHdrRepr, _frame: &[u8]) -> Result<(), BackendError> {
        self.sent += 1;
        Ok(())
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        let Some(len) = self.to_guest.pop_front() else {
            return Ok(None);
        };
        let dst = buf.get_mut(..len).ok_or(BackendError::Refused)?;
        for (i, b) in dst.iter_mut().enumerate() {
            *b = i as u8;
        }
        Ok(Some(RxFrame {
            len,
            hdr: NetHdrRepr::default(),
        }))
    }
}

struct Quiet;

impl Notifier for Quiet {
    fn used_buffer(&mut self, _queue: u16) {}
    fn config_changed(&mut self) {}
}

fn device<'p, const S: usize, const C: usize>(
    pools: &'p (FramePool<S, C>, FramePool<S, C>),
    features: Features,
) -> NetDevice<'p, Frames, NoInterceptor, S, C> {
    let mut dev = NetDevice::new(
        NetConfig::default(),
        Frames::default(),
        NoInterceptor,
        &pools.0,
        &pools.1,
    );
    dev.set_features(features).unwrap();
    dev
}

/// The wrapper passes a real RX delivery (header and frame into the
/// popped chain's writable buffer, the used element, the used idx) and
/// the reference walk agrees with the device's walk.
#[test]
fn recording_wrapper_passes_an_rx_delivery_and_a_tx_completion() {
    let tm = TestMemory::new(0, MEM);
    let pools: (FramePool<1536, 4>, FramePool<1536, 4>) = (FramePool::new(), FramePool::new());
    let mut dev = device(&pools, Features::VERSION_1 | Features::RING_INDIRECT_DESC);
    let mut rx = TestDriver::new(&tm, RING, 8).unwrap();
    let mut tx = TestDriver::new(&tm, RING + 0x1000, 8).unwrap();
    let mem = RecordingMemory::new(&tm, crate::queue::DEFAULT_MAX_SEGMENTS);
    dev.activate_queue(RX_QUEUE, rx.layout, &mem).unwrap();
    dev.activate_queue(TX_QUEUE, tx.layout, &mem).unwrap();
    mem.watch(0, rx.layout, true, 0);
    mem.watch(1, tx.layout, true, 0);
    dev.set_active(true);

    rx.add_chain(&tm, &[(BUF, 1526, true)]).unwrap();
    rx.publish(&tm).unwrap();
    dev.backend_mut().to_guest.push_back(60);
    assert_eq!(dev.process_rx(&mem, &mut Quiet, 8).handled, 1);
    mem.assert_clean();
    assert_eq!(rx.pop_used(&tm).unwrap(), Some((0, 72)));
    assert_eq!(mem.counts(0), (1, 1));

    tx.add_indirect(
        &tm,
        BUF + 0x1000,
        &[(BUF + 0x2000, 12, false), (BUF + 0x3000, 60, false)],
    )
    .unwrap();
    tx.publish(&tm).unwrap();
    assert_eq!(dev.process_tx(&mem, &mut Quiet, 8).handled, 1);
    mem.assert_clean();
    assert_eq!(dev.backend().sent, 1);
    assert_eq!(tx.pop_used(&tm).unwrap(), Some((0, 0)));

    // The reference walk sees the indirect chain as the device does.
    let r = ref_walk(&tm, &tx.layout, true, 0, 64);
    assert_eq!(r.strict, Ok(()));
    assert_eq!(
        r.segs,
        vec![(BUF + 0x2000, 12, false), (BUF + 0x3000, 60, false)]
    );
    assert_eq!((r.walked, r.indirect_entries), (3, 2));
}

/// The wrapper catches what it exists for: a write outside every
/// writable buffer in flight, a write into a completed chain, a plain
/// write of the used idx, a used idx moved further than the elements
/// written, a used element for a head that is not in flight, and any
/// write once nothing is watched (after a reset).
#[test]
fn recording_wrapper_catches_stray_writes_and_used_idx_jumps() {
    let tm = TestMemory::new(0, MEM);
    let mut d = TestDriver::new(&tm, RING, 4).unwrap();
    let f = QueueFeatures {
        event_idx: false,
        indirect: false,
    };
    let mem = RecordingMemory::new(&tm, 64);
    let mut q = SplitQueue::new(d.layout, f, 4, &mem).unwrap();
    mem.watch(0, d.layout, false, 0);
    d.add_chain(&tm, &[(BUF, 16, false), (BUF + 0x100, 32, true)])
        .unwrap();
    d.publish(&tm).unwrap();
    let mut c: DescriptorChain = DescriptorChain::new();
    let Ok(Some(Popped::Chain(h))) = q.pop(&mem, &mut c) else {
        panic!("no chain")
    };
    // Allowed: the writable buffer, used flags.
    c.write_at(&mem, 0, &[1; 32]).unwrap();
    q.disable_notifications(&mem).unwrap();
    assert!(mem.violations().is_empty(), "{:?}", mem.violations());

    let n = |mem: &RecordingMemory<&TestMemory>| mem.violations().len();
    // The readable buffer, one byte past the writable one.
    mem.write(GuestAddress(BUF), &[0]).unwrap();
    assert_eq!(n(&mem), 1);
    mem.write(GuestAddress(BUF + 0x100 + 31), &[0, 0]).unwrap();
    assert_eq!(n(&mem), 2);
    // The used idx by a plain write.
    let used_idx = GuestAddress(d.layout.used_ring.0 + 2);
    mem.write(used_idx, &[5, 0]).unwrap();
    assert_eq!(n(&mem), 3);
    // Complete the chain (its element reaches the ring when the queue
    // publishes, I-QUEUE-12; publishing one element is fine): then its
    // buffer is no longer writable.
    q.add_used(&mem, h, 32).unwrap();
    q.publish_used(&mem).unwrap();
    assert_eq!(n(&mem), 3);
    mem.write(GuestAddress(BUF + 0x100), &[0]).unwrap();
    assert_eq!(n(&mem), 4);
    // A used element for a head not in flight, alone, then two in one
    // batch.
    let elem = GuestAddress(d.layout.used_ring.0 + 4 + 8);
    mem.write(elem, &[3, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!(n(&mem), 5);
    let two = [3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0];
    mem.write(elem, &two).unwrap();
    assert_eq!(n(&mem), 7);
    // Jumping ahead is not fine.
    mem.store_u16_release(used_idx, 3).unwrap();
    assert_eq!(n(&mem), 8);
    // Nothing watched: every write is a violation.
    mem.unwatch_all();
    mem.write(GuestAddress(d.layout.used_ring.0), &[0, 0])
        .unwrap();
    assert_eq!(n(&mem), 9);
    let caught = mem.violations();
    assert!(caught[2].contains("used idx"), "{caught:?}");
    assert!(caught[4].contains("not in flight"), "{caught:?}");
    assert!(
        caught[6].contains("head 4, which is not in flight"),
        "{caught:?}"
    );
    assert!(caught[7].contains("moved by 2"), "{caught:?}");
}

/// The reference walk refuses what the spec forbids, as the device does.
#[test]
fn reference_walk_refuses_loops_bad_flags_and_buffers_outside_memory() {
    let tm = TestMemory::new(0, MEM);
    let d = TestDriver::new(&tm, RING, 4).unwrap();
    let l: QueueLayout = d.layout;
    use crate::wire::{DescFlags as F, Descriptor as D};
    let cases: [(D, &str); 4] = [
        (D::new(BUF, 16, F::NEXT, 0), "loop"),
        (D::new(BUF, 16, F::from_bits_retain(8), 0), "unknown flags"),
        (
            D::new(MEM as u64 - 8, 16, F::empty(), 0),
            "buffer outside memory",
        ),
        (D::new(BUF, 16, F::INDIRECT, 0), "indirect not negotiated"),
    ];
    for (desc, why) in cases {
        d.write_desc(&tm, 0, desc).unwrap();
        assert_eq!(ref_walk(&tm, &l, false, 0, 64).strict, Err(why));
    }
}

/// rx fuzz target, timeout (found while the core's merged-RX path was
/// being reworked; input `fuzz/corpus/rx/regress-merged-rx-hang-wip`):
/// with MRG_RXBUF, two large frames arrive before any buffer, then fewer
/// buffers than the first frame needs. `process_rx` must return at once
/// every time (no spin), keep the frame waiting, publish nothing and leave
/// every buffer available.
#[test]
fn rx_regress_merged_frame_larger_than_all_buffers_does_not_spin() {
    let tm = TestMemory::new(0, 0x40000);
    let pools: (FramePool<65550, 2>, FramePool<65550, 2>) = (FramePool::new(), FramePool::new());
    let mut dev = device(&pools, Features::VERSION_1 | Features::MRG_RXBUF);
    let mut rx = TestDriver::new(&tm, RING, 16).unwrap();
    dev.activate_queue(RX_QUEUE, rx.layout, &tm).unwrap();
    dev.set_active(true);
    dev.backend_mut().to_guest.extend([36237, 54227]);
    for budget in [61, 61] {
        assert_eq!(dev.process_rx(&tm, &mut Quiet, budget).handled, 0);
    }
    let mut at = 0x10000;
    for len in [6400u32, 6425, 6425, 3865] {
        rx.add_chain(&tm, &[(at, len, true)]).unwrap();
        at += u64::from(len);
    }
    rx.publish(&tm).unwrap();
    for budget in [67, 0, 67] {
        let p = dev.process_rx(&tm, &mut Quiet, budget);
        assert_eq!(p.handled, 0);
    }
    assert!(dev.rx_pending());
    assert_eq!(rx.used_idx(&tm).unwrap(), 0, "nothing published");
    let q = dev.queue(RX_QUEUE).unwrap();
    assert_eq!(
        (q.next_avail(), q.in_flight()),
        (0, 0),
        "buffers given back"
    );
    // Enough buffers: it goes through.
    for _ in 0..8 {
        rx.add_chain(&tm, &[(at, 8192, true)]).unwrap();
        at += 8192;
    }
    rx.publish(&tm).unwrap();
    assert_eq!(dev.process_rx(&tm, &mut Quiet, 1).handled, 1);
    assert!(rx.used_idx(&tm).unwrap() >= 5);
    dev.reset();
    assert_eq!(pools.0.available(), pools.0.capacity());
}

/// queue fuzz target, oracle failure (the input was dropped from the
/// corpus with the policy decision below): the driver made chains
/// available, the device consumed some, then the driver moved avail idx
/// back (forbidden, §2.7.6.1). `enable_notifications` writes the avail idx
/// it last saw, beyond the one now published. The core's policy
/// (specs/03-virtqueue.md, 9061061, after a fix tried in f2aec1b) keeps
/// that: only the misbehaving driver's own kicks are delayed. This test
/// pins the policy; the `queue` target's oracle checks the same.
#[test]
fn queue_regress_avail_event_after_avail_idx_decrement_is_the_last_seen() {
    let tm = TestMemory::new(0, MEM);
    let mut d = TestDriver::new(&tm, RING, 8).unwrap();
    let f = QueueFeatures {
        event_idx: true,
        indirect: false,
    };
    let mut q = SplitQueue::new(d.layout, f, 8, &tm).unwrap();
    for i in 0..3 {
        d.add_chain(&tm, &[(BUF + 0x100 * i, 64, true)]).unwrap();
    }
    d.publish(&tm).unwrap();
    let mut c: DescriptorChain = DescriptorChain::new();
    let Ok(Some(Popped::Chain(h))) = q.pop(&tm, &mut c) else {
        panic!("no chain")
    };
    q.add_used(&tm, h, 0).unwrap();
    d.set_avail_idx(&tm, 1).unwrap();
    assert_eq!(q.enable_notifications(&tm), Ok(false));
    // Policy (specs/03): avail_event is the avail idx last seen (3). A driver
    // that decrements avail idx (forbidden, §2.7.6.1) only delays its own
    // kicks; the device stays bounded and correct.
    let ev = d.avail_event(&tm).unwrap();
    assert_eq!(ev, 3, "avail_event is the last avail idx seen");
}
