//! Target `mmio`: the virtio-mmio register block (VIRTIO 1.2 §4.2.2) with
//! a `NetDevice` behind it, driven by register reads and writes in any
//! order: the status machine, feature negotiation, queue setup, kicks,
//! interrupt acknowledgement and resets at any point, with a driver that
//! posts TX and RX buffers on whatever queues came up.
//!
//! Oracles (specs/09-fuzzing.md), after every register access:
//! - status bits are only added, except by writing 0; DRIVER_OK needs
//!   FEATURES_OK; with FEATURES_OK the negotiated set is a valid subset of
//!   the offer containing VERSION_1, without it nothing is negotiated;
//! - queue registers written outside the FEATURES_OK..DRIVER_OK window (or
//!   on a ready queue) read back unchanged; a queue only comes up from a
//!   QueueReady write in that window; QueueSel out of range reads 0;
//! - no used-buffer interrupt without DRIVER_OK; no guest-memory write
//!   unless DRIVER_OK (the [`RecordingMemory`] watches the device's queues
//!   only then, and checks every write against them);
//! - a reset clears status, interrupts, features and queues, and gives
//!   every pool slot back (I-FUZZ-4); after a kick, no TX slot is held and
//!   at most one RX slot (the frame waiting for buffers).
//!
//! [`RecordingMemory`]: crate::recording::RecordingMemory

use std::rc::Rc;

use arbitrary::Arbitrary;
use virtnet::device::{validate, NetDevice, RX_QUEUE, TX_QUEUE};
use virtnet::features::Features;
use virtnet::mmio::{regs, DeviceStatus, InterruptLine, MmioTransport, INT_VRING};
use virtnet::pool::FramePool;
use zerocopy::IntoBytes;

use crate::driver::Driver;
use crate::encode::{Bytes, Enc};
use crate::net::{self, HandedLog, RecBackend, RecInterceptor, RecNotifier, RxPlan};
use crate::queue::packed_layout;
use crate::ram::{Addr, Bump, GuestRam, MemSpec};
use crate::recording::RecordingMemory;
use crate::tx::Hdr;
use crate::{enc_enum, enc_struct};

/// One operation.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A load: offset `% 0x200`, size `[1, 2, 4, 8][v % 4]`.
    Read(u16, u8),
    /// A store: offset, size as for `Read`, value.
    Write(u16, u8, u32),
    /// Store to Status.
    Status(u8),
    /// ACKNOWLEDGE, DRIVER, DriverFeatures (both halves), FEATURES_OK.
    Init(u64),
    /// Queue setup: QueueSel, QueueNum `1 << (v % 16)`, the three ring
    /// addresses (contiguous from the address), QueueReady = 1.
    Queue(u8, u8, Addr),
    /// Status |= DRIVER_OK.
    DriverOk,
    /// QueueNotify.
    Kick(u16),
    /// InterruptACK.
    Ack(u32),
    /// `MmioTransport::poll`.
    Poll,
    /// The driver posts a TX frame of this length (published).
    Tx(u16, Hdr),
    /// The driver posts RX buffers of these lengths (published).
    Rx(Vec<u16>),
    /// The backend's next answer.
    Backend(RxPlan),
    /// Bytes anywhere in guest memory.
    Scribble(Addr, Bytes),
    /// Link state change.
    Link(bool),
    /// Store 0 to Status.
    Reset,
}
enc_enum!(Op, 15, {
    0 => Op::Read(o, s) => [o, s],
    1 => Op::Write(o, s, v) => [o, s, v],
    2 => Op::Status(v) => [v],
    3 => Op::Init(f) => [f],
    4 => Op::Queue(q, s, a) => [q, s, a],
    5 => Op::DriverOk => [],
    6 => Op::Kick(q) => [q],
    7 => Op::Ack(v) => [v],
    8 => Op::Poll => [],
    9 => Op::Tx(l, h) => [l, h],
    10 => Op::Rx(b) => [b],
    11 => Op::Backend(p) => [p],
    12 => Op::Scribble(a, b) => [a, b],
    13 => Op::Link(u) => [u],
    14 => Op::Reset => [],
});

/// The `mmio` target's input.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Guest RAM.
    pub mem: MemSpec,
    /// 65550-byte slots instead of 1536.
    pub big: bool,
    /// Backend capability bits.
    pub caps: u16,
    /// The embedder's offer.
    pub offer: u64,
    /// `queue_size_max = 1 << (v % 16)`.
    pub qmax_log2: u8,
    /// Initial link state.
    pub link_up: bool,
    /// Work budget per notification (`v % 64 + 1`).
    pub budget: u8,
    /// The operations.
    pub ops: Vec<Op>,
}
enc_struct!(Input {
    mem,
    big,
    caps,
    offer,
    qmax_log2,
    link_up,
    budget,
    ops
});

impl Input {
    /// The encoded input (a corpus file).
    pub fn encode(&self) -> Vec<u8> {
        Enc::of(self)
    }
}

/// An interrupt line that counts.
#[derive(Debug, Default)]
struct Line {
    raised: u64,
    lowered: u64,
}

impl InterruptLine for Line {
    fn raise(&mut self) {
        self.raised += 1;
    }
    fn lower(&mut self) {
        self.lowered += 1;
    }
}

/// Run one input; panics on an oracle failure.
pub fn run(input: &Input) {
    let ram = GuestRam::new(&input.mem);
    if input.big {
        run_with(input, &ram, (&net::RX_BIG, &net::TX_BIG));
    } else {
        run_with(input, &ram, (&net::RX_SMALL, &net::TX_SMALL));
    }
}

type Dev<const S: usize, const C: usize> = NetDevice<'static, RecBackend, RecInterceptor, S, C>;

struct Harness<'r, const S: usize, const C: usize> {
    mem: RecordingMemory<&'r virtnet::mem::RegionMemory<2>>,
    t: MmioTransport<Dev<S, C>>,
    line: Line,
    drivers: [Option<Driver>; 2],
    bump: Bump,
    seq: u32,
    pools: (&'static FramePool<S, C>, &'static FramePool<S, C>),
}

const QUEUE_REGS: [u64; 7] = [
    regs::QUEUE_NUM,
    regs::QUEUE_DESC_LOW,
    regs::QUEUE_DESC_HIGH,
    regs::QUEUE_DRIVER_LOW,
    regs::QUEUE_DRIVER_HIGH,
    regs::QUEUE_DEVICE_LOW,
    regs::QUEUE_DEVICE_HIGH,
];

impl<const S: usize, const C: usize> Harness<'_, S, C> {
    fn status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_retain(self.t.read(regs::STATUS, 4) as u8)
    }

    /// One register store, with the per-store checks.
    fn store(&mut self, off: u64, size: usize, value: u32) {
        let before = self.status();
        let queues_before = [
            self.t.device().queue(RX_QUEUE).map(|q| q.layout()),
            self.t.device().queue(TX_QUEUE).map(|q| q.layout()),
        ];
        let reg_before = QUEUE_REGS
            .contains(&off)
            .then(|| (self.t.read(off, 4), self.t.read(regs::QUEUE_READY, 4)));
        let int_before = self.t.interrupt_status();
        let p = self
            .t
            .write(off, size, u64::from(value), &self.mem, &mut self.line);
        let after = self.status();
        let nr = DeviceStatus::DEVICE_NEEDS_RESET;
        if off == regs::STATUS && size == 4 && value == 0 {
            assert_eq!(after, DeviceStatus::empty(), "status after reset");
            assert_eq!(self.t.interrupt_status(), 0, "interrupts after reset");
            assert!(self.t.device().negotiated_features().is_empty());
            assert!(self.t.device().queue(RX_QUEUE).is_none());
            assert!(self.t.device().queue(TX_QUEUE).is_none());
            assert!(!self.t.device().rx_pending());
            net::assert_pool_full(self.pools.0, "rx pool after reset");
            net::assert_pool_full(self.pools.1, "tx pool after reset");
            self.drivers = [None, None];
        } else {
            assert!(
                after.difference(nr).contains(before.difference(nr)),
                "status bits cleared without a reset: {before:?} -> {after:?}"
            );
        }
        if let Some((v, ready)) = reg_before {
            let window = before.contains(DeviceStatus::FEATURES_OK)
                && !before.contains(DeviceStatus::DRIVER_OK)
                && ready == 0;
            if !window || size != 4 {
                assert_eq!(
                    self.t.read(off, 4),
                    v,
                    "queue register {off:#x} changed outside the window"
                );
            }
        }
        for (i, q) in [RX_QUEUE, TX_QUEUE].into_iter().enumerate() {
            let now = self.t.device().queue(q).map(|q| q.layout());
            if now.is_some() && now != queues_before[i] {
                assert!(
                    off == regs::QUEUE_READY
                        && before.contains(DeviceStatus::FEATURES_OK)
                        && !before.contains(DeviceStatus::DRIVER_OK),
                    "queue {q} came up outside QueueReady in the window"
                );
            }
        }
        let new_ints = self.t.interrupt_status() & !int_before;
        if new_ints & INT_VRING != 0 {
            assert!(
                before.contains(DeviceStatus::DRIVER_OK),
                "used-buffer interrupt before DRIVER_OK"
            );
        }
        if p.handled > 0 {
            crate::count(|c| c.mmio_moves += 1);
        }
        if off == regs::QUEUE_NOTIFY && !before.contains(DeviceStatus::DRIVER_OK) {
            assert_eq!(p.handled, 0, "a kick before DRIVER_OK consumed buffers");
        }
        self.after_access();
    }

    /// Checks after any access, and the memory watch kept in step.
    fn after_access(&mut self) {
        let st = self.status();
        let dev = self.t.device();
        let nf = dev.negotiated_features();
        if st.contains(DeviceStatus::FEATURES_OK) {
            assert!(nf.contains(Features::VERSION_1));
            assert_eq!(validate(nf, dev.offered_features()), Ok(nf));
        } else {
            assert!(nf.is_empty(), "features negotiated without FEATURES_OK");
        }
        if st.contains(DeviceStatus::DRIVER_OK) {
            assert!(
                st.contains(DeviceStatus::FEATURES_OK),
                "DRIVER_OK without FEATURES_OK"
            );
        }
        net::assert_pools_accounted(
            self.pools.0,
            self.pools.1,
            dev.pool_slots_held(),
            "between accesses",
        );
        // Guest memory may only be written from DRIVER_OK on.
        for q in [RX_QUEUE, TX_QUEUE] {
            let qi = usize::from(q);
            let layout = dev.queue(q).map(|q| (q.layout(), q.next_used()));
            match layout {
                Some((l, used)) if st.contains(DeviceStatus::DRIVER_OK) => {
                    if self.mem.watched(qi) != Some(l) {
                        let ind = nf.contains(Features::RING_INDIRECT_DESC);
                        self.mem.watch(qi, l, ind, used);
                    }
                }
                _ => self.mem.unwatch(qi),
            }
        }
        self.mem.assert_clean();
    }

    fn load(&mut self, off: u64, size: usize, sel: u32) {
        let v = self.t.read(off, size);
        if off < regs::CONFIG && size != 4 {
            assert_eq!(v, 0, "a {size}-byte register read returned {v:#x}");
        }
        if size == 4 {
            match off {
                regs::MAGIC_VALUE => assert_eq!(v, u64::from(virtnet::mmio::MAGIC)),
                regs::VERSION => assert_eq!(v, 2),
                regs::DEVICE_ID => assert_eq!(v, 1),
                _ => {}
            }
            if sel >= 2
                && (QUEUE_REGS.contains(&off)
                    || off == regs::QUEUE_READY
                    || off == regs::QUEUE_NUM_MAX)
            {
                assert_eq!(v, 0, "QueueSel {sel}: register {off:#x} reads {v:#x}");
            }
        }
        self.after_access();
    }
}

fn run_with<const S: usize, const C: usize>(
    input: &Input,
    ram: &GuestRam,
    pools: (&'static FramePool<S, C>, &'static FramePool<S, C>),
) {
    net::assert_pool_full(pools.0, "rx pool at start");
    net::assert_pool_full(pools.1, "tx pool at start");
    let handed: HandedLog = Rc::default();
    let cfg = net::config(input.offer, input.qmax_log2, input.link_up);
    let dev = NetDevice::new(
        cfg,
        RecBackend::new(net::caps(input.caps), handed.clone()),
        RecInterceptor::new(handed),
        pools.0,
        pools.1,
    );
    let mut t = MmioTransport::new(dev);
    t.set_budget(usize::from(input.budget % 64) + 1);
    let mut h = Harness {
        mem: ram.recording(),
        t,
        line: Line::default(),
        drivers: [None, None],
        bump: Bump::new(ram.base, ram.base + ram.span),
        seq: 0,
        pools,
    };
    let mut sel: u32 = 0;
    let sizes = [1usize, 2, 4, 8];
    for op in &input.ops {
        match op {
            Op::Read(o, s) => h.load(u64::from(*o % 0x200), sizes[usize::from(*s % 4)], sel),
            Op::Write(o, s, v) => {
                let off = u64::from(*o % 0x200);
                let size = sizes[usize::from(*s % 4)];
                if off == regs::QUEUE_SEL && size == 4 {
                    sel = *v;
                }
                if off == regs::STATUS && size == 4 && *v == 0 {
                    sel = 0;
                }
                h.store(off, size, *v);
            }
            Op::Status(v) => {
                if *v == 0 {
                    sel = 0;
                }
                h.store(regs::STATUS, 4, u32::from(*v));
            }
            Op::Init(f) => {
                let ack = DeviceStatus::ACKNOWLEDGE.bits();
                let drv = ack | DeviceStatus::DRIVER.bits();
                h.store(regs::STATUS, 4, u32::from(ack));
                h.store(regs::STATUS, 4, u32::from(drv));
                for half in 0..2u32 {
                    h.store(regs::DEVICE_FEATURES_SEL, 4, half);
                    h.load(regs::DEVICE_FEATURES, 4, sel);
                    h.store(regs::DRIVER_FEATURES_SEL, 4, half);
                    h.store(regs::DRIVER_FEATURES, 4, (*f >> (32 * half)) as u32);
                }
                let fok = drv | DeviceStatus::FEATURES_OK.bits();
                h.store(regs::STATUS, 4, u32::from(fok));
            }
            Op::Queue(q, s, at) => {
                sel = u32::from(*q % 3);
                let size = 1u16 << (s % 16);
                let l = packed_layout(ram.addr(*at), size);
                h.store(regs::QUEUE_SEL, 4, sel);
                h.load(regs::QUEUE_NUM_MAX, 4, sel);
                h.store(regs::QUEUE_NUM, 4, u32::from(size));
                for (lo, v) in [
                    (regs::QUEUE_DESC_LOW, l.desc_table.0),
                    (regs::QUEUE_DRIVER_LOW, l.avail_ring.0),
                    (regs::QUEUE_DEVICE_LOW, l.used_ring.0),
                ] {
                    h.store(lo, 4, v as u32);
                    h.store(lo + 4, 4, (v >> 32) as u32);
                }
                // A driver zeroes its rings first.
                let span = (l.used_ring.0.wrapping_add(6 + 8 * u64::from(size)))
                    .wrapping_sub(l.desc_table.0)
                    .min(1 << 20);
                let was_up = h.t.device().queue(sel as u16).is_some();
                if !was_up {
                    ram.poke(l.desc_table.0, &vec![0u8; span as usize]);
                }
                h.store(regs::QUEUE_READY, 4, 1);
                if sel < 2 && !was_up {
                    let q = sel as u16;
                    let up = h.t.device().queue(q).map(|q| q.layout());
                    h.drivers[usize::from(q)] = (up == Some(l)).then(|| Driver::new(l));
                }
            }
            Op::DriverOk => {
                let v = h.status().difference(DeviceStatus::DEVICE_NEEDS_RESET)
                    | DeviceStatus::DRIVER_OK;
                h.store(regs::STATUS, 4, u32::from(v.bits()));
            }
            Op::Kick(q) => h.store(regs::QUEUE_NOTIFY, 4, u32::from(*q)),
            Op::Ack(v) => h.store(regs::INTERRUPT_ACK, 4, *v),
            Op::Poll => {
                let running = h.status().contains(DeviceStatus::DRIVER_OK);
                let p = h.t.poll(&h.mem, &mut h.line);
                if !running {
                    assert_eq!(p.handled, 0, "poll before DRIVER_OK consumed buffers");
                }
                if p.handled > 0 {
                    crate::count(|c| c.mmio_moves += 1);
                }
                h.after_access();
            }
            Op::Tx(len, hdr) => {
                let bytes: Vec<u8> = hdr
                    .wire()
                    .as_bytes()
                    .iter()
                    .copied()
                    .chain(net::frame_bytes(h.seq, usize::from(*len)))
                    .collect();
                h.seq += 1;
                if let Some(d) = h.drivers[usize::from(TX_QUEUE)].as_mut() {
                    d.take_used(ram);
                    if let Some(at) = h.bump.alloc(bytes.len() as u64, 2) {
                        ram.poke(at, &bytes);
                        if d.post(ram, &[(at, bytes.len() as u32, false)], None, 0)
                            .is_some()
                        {
                            d.publish(ram);
                        }
                    }
                }
            }
            Op::Rx(bufs) => {
                if let Some(d) = h.drivers[usize::from(RX_QUEUE)].as_mut() {
                    d.take_used(ram);
                    let descs: Vec<_> = bufs
                        .iter()
                        .take(16)
                        .filter_map(|&l| Some((h.bump.alloc(u64::from(l), 2)?, u32::from(l), true)))
                        .collect();
                    if d.post(ram, &descs, None, 0).is_some() {
                        d.publish(ram);
                    }
                }
            }
            Op::Backend(p) => h.t.device_mut().backend_mut().plans.push_back(*p),
            Op::Scribble(a, b) => {
                ram.poke(ram.addr(*a), &b.0);
            }
            Op::Link(up) => {
                let mut n = RecNotifier::default();
                h.t.device_mut().set_link_up(*up, &mut n);
                h.t.notify_config(&mut h.line);
                h.after_access();
            }
            Op::Reset => {
                sel = 0;
                h.store(regs::STATUS, 4, 0);
            }
        }
    }
    h.store(regs::STATUS, 4, 0);
}
