//! What the device targets (`tx`, `rx`, `mmio`) share: a recording backend,
//! an interceptor, a notifier, the frame pools, feature choice, frame
//! contents that identify themselves, and a reference checksum.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use arbitrary::Arbitrary;
use virtnet::device::{
    Backend, BackendCaps, BackendError, Interceptor, NetConfig, Notifier, Progress, RxFrame,
    Verdict,
};
use virtnet::features::Features;
use virtnet::pool::FramePool;
use virtnet::wire::net_hdr::{Gso, GsoKind, PartialCsum};
use virtnet::wire::NetHdrRepr;

use crate::driver::Driver;
use crate::queue::{packed_layout, DescSpec};
use crate::ram::{Bump, GuestRam};
use crate::recording::RecordingMemory;
use crate::{enc_enum, enc_struct};
use virtnet::device::NetDevice;
use virtnet::mem::RegionMemory;
use virtnet::queue::Virtqueue;

/// Small slots: an MTU-1500 frame.
pub const SMALL: usize = 1536;
/// Slots in a small pool.
pub const SMALL_COUNT: usize = 8;
/// Big slots: a 64 KiB GSO frame (offloads are only offered with these).
pub const BIG: usize = 65550;
/// Slots in a big pool.
pub const BIG_COUNT: usize = 2;

/// RX pool, small slots.
pub static RX_SMALL: FramePool<SMALL, SMALL_COUNT> = FramePool::new();
/// TX pool, small slots.
pub static TX_SMALL: FramePool<SMALL, SMALL_COUNT> = FramePool::new();
/// RX pool, big slots.
pub static RX_BIG: FramePool<BIG, BIG_COUNT> = FramePool::new();
/// TX pool, big slots.
pub static TX_BIG: FramePool<BIG, BIG_COUNT> = FramePool::new();

/// Assert that every slot of a pool is free (I-FUZZ-4).
pub fn assert_pool_full<const S: usize, const C: usize>(p: &FramePool<S, C>, what: &str) {
    assert_eq!(
        p.available(),
        p.capacity(),
        "{what}: pool slots lost ({} of {} free)",
        p.available(),
        p.capacity()
    );
}

/// Assert the pools' accounting between calls (I-FUZZ-4, I-POOL-5): the
/// device holds at most one idle slot per direction plus the RX frame
/// waiting for buffers (`held` from `NetDevice::pool_slots_held`), and every
/// other slot is free.
pub fn assert_pools_accounted<const S: usize, const C: usize>(
    rx: &FramePool<S, C>,
    tx: &FramePool<S, C>,
    held: (usize, usize),
    what: &str,
) {
    assert!(held.0 <= 2 && held.1 <= 1, "{what}: device holds {held:?}");
    assert_eq!(
        rx.available() + held.0,
        rx.capacity(),
        "{what}: RX pool slots lost"
    );
    assert_eq!(
        tx.available() + held.1,
        tx.capacity(),
        "{what}: TX pool slots lost"
    );
}

/// The bytes of frame number `seq`, `len` long: every frame differs from
/// every other of the same length.
pub fn frame_bytes(seq: u32, len: usize) -> Vec<u8> {
    let s = seq.to_le_bytes();
    (0..len)
        .map(|i| {
            if i < 4 {
                s[i]
            } else {
                (i as u8).wrapping_mul(31) ^ s[0] ^ (i >> 8) as u8
            }
        })
        .collect()
}

/// RFC 1071 sum, folded, written independently of the core.
pub fn ref_sum(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for (i, b) in data.iter().enumerate() {
        let v = u32::from(*b);
        acc += if i % 2 == 0 { v << 8 } else { v };
        acc = (acc & 0xffff) + (acc >> 16);
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// What a completed checksum must hold: the complement of the sum of
/// `frame[start..]` with the driver's seed in the field.
pub fn ref_checksum(original: &[u8], c: PartialCsum) -> u16 {
    !ref_sum(&original[usize::from(c.start)..])
}

/// Backend capabilities as input bits (tx_csum, tx_tso4, tx_tso6, tx_ufo,
/// tx_ecn, rx_csum, rx_tso4, rx_tso6, rx_ufo, rx_ecn from bit 0).
pub fn caps(bits: u16) -> BackendCaps {
    let b = |i: u16| bits & (1 << i) != 0;
    BackendCaps {
        tx_csum: b(0),
        tx_tso4: b(1),
        tx_tso6: b(2),
        tx_ufo: b(3),
        tx_ecn: b(4),
        rx_csum: b(5),
        rx_tso4: b(6),
        rx_tso6: b(7),
        rx_ufo: b(8),
        rx_ecn: b(9),
    }
}

/// The driver's feature choice: `offered & wish`, with VERSION_1; if the
/// device refuses that (dependencies), the dependency-free part of it.
pub fn driver_features(offered: Features, wish: u64) -> [Features; 2] {
    let f = Features::from_bits_retain(offered.bits() & wish) | Features::VERSION_1;
    let safe = Features::VERSION_1
        | Features::MRG_RXBUF
        | Features::RING_EVENT_IDX
        | Features::RING_INDIRECT_DESC
        | Features::CSUM
        | Features::GUEST_CSUM
        | Features::MAC
        | Features::MTU
        | Features::STATUS;
    [f, f & safe]
}

/// A device configuration from input values.
pub fn config(offer: u64, qmax_log2: u8, link_up: bool) -> NetConfig {
    NetConfig {
        mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        mtu: Some(1500),
        queue_size_max: 1 << (qmax_log2 % 16),
        offer: Features::from_bits_retain(offer),
        link_up,
    }
}

/// GSO of an RX header: `(kind 0..4, (ecn, (size, hdr_len)))`.
pub type GsoSpec = (u8, (bool, (u16, u16)));

/// An RX header from input values: the backend's offload metadata.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxHdr {
    /// Partial checksum `(start, offset)`.
    pub csum: Option<(u16, u16)>,
    /// DATA_VALID.
    pub data_valid: bool,
    /// GSO `(kind 0..4, ecn, size, hdr_len)`.
    pub gso: Option<GsoSpec>,
}
enc_struct!(RxHdr {
    csum,
    data_valid,
    gso
});

impl RxHdr {
    /// As the core's header representation.
    pub fn repr(&self) -> NetHdrRepr {
        NetHdrRepr {
            csum: self
                .csum
                .map(|(start, offset)| PartialCsum { start, offset }),
            data_valid: self.data_valid,
            gso: self.gso.map(|(k, (ecn, (size, hdr_len)))| Gso {
                kind: [GsoKind::TcpV4, GsoKind::Udp, GsoKind::TcpV6, GsoKind::UdpL4]
                    [usize::from(k % 4)],
                ecn,
                size,
                hdr_len,
            }),
        }
    }
}

/// How the backend answers one `receive`.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxPlan {
    /// A frame of `len` bytes (frames longer than the slot are dropped by
    /// the backend, as its contract says).
    Frame(u32, RxHdr),
    /// A receive error.
    Error,
    /// A buggy backend: claims more bytes than the buffer holds (by
    /// `1 + v % 4096`).
    Lie(u32),
}
enc_enum!(RxPlan, 3, {
    0 => RxPlan::Frame(l, h) => [l, h],
    1 => RxPlan::Error => [],
    2 => RxPlan::Lie(l) => [l],
});

/// A frame handed to the device for the guest, in order.
#[derive(Clone, Debug)]
pub struct Handed {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its metadata.
    pub hdr: NetHdrRepr,
}

/// Frames handed to the device, shared by the backend and interceptor.
pub type HandedLog = Rc<RefCell<Vec<Handed>>>;

/// A backend that records what it sends and plays [`RxPlan`]s.
#[derive(Debug)]
pub struct RecBackend {
    /// Capabilities.
    pub caps: BackendCaps,
    /// Frames transmitted: `(hdr, bytes)`.
    pub sent: Vec<(NetHdrRepr, Vec<u8>)>,
    /// Plans for the next receives.
    pub plans: VecDeque<RxPlan>,
    /// Next frame sequence number.
    pub seq: u32,
    /// Fail every transmit whose index has this bit pattern (`n % 8 < fail`).
    pub fail_tx: u8,
    /// Transmit calls.
    pub tx_calls: u64,
    /// Receive calls that failed or lied.
    pub rx_faults: u64,
    /// The handed-frames log.
    pub handed: HandedLog,
    /// Offloads the device told us about.
    pub offloads: Option<Features>,
    /// Lend storage to the device (zero-copy, I-NET-12): TX buffers (not
    /// every time: every eighth call lends none, as a full backend) and
    /// RX frames in place.
    pub lend: bool,
    /// The buffer lent for TX (garbage until the device fills it).
    txbuf: Vec<u8>,
    /// The RX frame lent and not consumed: lent again until it is.
    lent: Option<(Vec<u8>, NetHdrRepr)>,
}

/// Whether the `bits` of an input's backend capabilities ask for a
/// lending backend (bit 10; bits 0..=9 are [`caps`]).
pub fn lends(bits: u16) -> bool {
    bits & (1 << 10) != 0
}

impl RecBackend {
    /// A backend with `caps`.
    pub fn new(caps: BackendCaps, handed: HandedLog) -> Self {
        RecBackend {
            caps,
            sent: Vec::new(),
            plans: VecDeque::new(),
            seq: 0x1000,
            fail_tx: 0,
            tx_calls: 0,
            rx_faults: 0,
            handed,
            offloads: None,
            lend: false,
            txbuf: Vec::new(),
            lent: None,
        }
    }

    /// The next frame for the guest, `len` bytes with header `h`, logged as
    /// handed to the device.
    fn hand(&mut self, len: usize, h: RxHdr) -> (Vec<u8>, NetHdrRepr) {
        let bytes = frame_bytes(self.seq, len);
        self.seq += 1;
        let hdr = h.repr();
        self.handed.borrow_mut().push(Handed {
            bytes: bytes.clone(),
            hdr,
        });
        (bytes, hdr)
    }

    /// Take a frame for the host, or fail as `fail_tx` says.
    fn take(&mut self, hdr: &NetHdrRepr, frame: Vec<u8>) -> Result<(), BackendError> {
        let n = self.tx_calls;
        self.tx_calls += 1;
        if (n % 8) < u64::from(self.fail_tx % 9) {
            return Err(BackendError::Busy);
        }
        self.sent.push((*hdr, frame));
        Ok(())
    }
}

impl Backend for RecBackend {
    fn caps(&self) -> BackendCaps {
        self.caps
    }
    fn set_offloads(&mut self, negotiated: Features) {
        self.offloads = Some(negotiated);
    }
    fn transmit(&mut self, hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        self.take(hdr, frame.to_vec())
    }
    fn tx_buffer(&mut self, len: usize) -> Option<&mut [u8]> {
        if !self.lend || self.tx_calls % 8 == 7 {
            return None;
        }
        // Garbage the device must overwrite entirely.
        self.txbuf = vec![0xa5; len];
        Some(&mut self.txbuf)
    }
    fn tx_commit(&mut self, hdr: &NetHdrRepr, len: usize) -> Result<(), BackendError> {
        assert!(len <= self.txbuf.len(), "committed more than lent");
        let frame = self.txbuf[..len].to_vec();
        self.take(hdr, frame)
    }
    fn rx_peek(&mut self) -> Option<(&[u8], NetHdrRepr)> {
        if !self.lend {
            return None;
        }
        if self.lent.is_none() {
            // Errors and lies are played through `receive`.
            let Some(RxPlan::Frame(len, h)) = self.plans.front().copied() else {
                return None;
            };
            self.plans.pop_front();
            self.lent = Some(self.hand(len as usize % (BIG + 2), h));
        }
        self.lent.as_ref().map(|(b, h)| (&b[..], *h))
    }
    fn rx_consume(&mut self) {
        assert!(self.lent.take().is_some(), "consumed a frame never lent");
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        // The frame lent last (to be fixed up in a slot), if it fits.
        if let Some((bytes, hdr)) = self.lent.take() {
            if let Some(dst) = buf.get_mut(..bytes.len()) {
                dst.copy_from_slice(&bytes);
                return Ok(Some(RxFrame {
                    len: bytes.len(),
                    hdr,
                }));
            }
        }
        loop {
            let Some(plan) = self.plans.pop_front() else {
                return Ok(None);
            };
            match plan {
                RxPlan::Error => {
                    self.rx_faults += 1;
                    return Err(BackendError::Io);
                }
                RxPlan::Lie(extra) => {
                    // More than the buffer holds (a lie within it would be
                    // a frame of stale bytes the device cannot tell).
                    self.rx_faults += 1;
                    return Ok(Some(RxFrame {
                        len: buf.len() + 1 + extra as usize % 4096,
                        hdr: NetHdrRepr::default(),
                    }));
                }
                RxPlan::Frame(len, h) => {
                    let len = len as usize % (BIG + 2);
                    if len > buf.len() {
                        continue;
                    }
                    let (bytes, hdr) = self.hand(len, h);
                    buf[..len].copy_from_slice(&bytes);
                    return Ok(Some(RxFrame { len, hdr }));
                }
            }
        }
    }
}

/// An interceptor that claims TX frames whose first byte is `claim`, and
/// injects RX frames.
#[derive(Debug)]
pub struct RecInterceptor {
    /// First byte of the frames it claims.
    pub claim: Option<u8>,
    /// Frames claimed.
    pub claimed: u64,
    /// Lengths of frames to inject.
    pub inject: VecDeque<u16>,
    /// Next sequence number.
    pub seq: u32,
    /// The handed-frames log.
    pub handed: HandedLog,
}

impl RecInterceptor {
    /// An interceptor claiming nothing yet.
    pub fn new(handed: HandedLog) -> Self {
        RecInterceptor {
            claim: None,
            claimed: 0,
            inject: VecDeque::new(),
            seq: 0x8000_0000,
            handed,
        }
    }
}

impl Interceptor for RecInterceptor {
    fn on_transmit(&mut self, frame: &[u8]) -> Verdict {
        if self.claim.is_some() && frame.first().copied() == self.claim {
            self.claimed += 1;
            Verdict::Consumed
        } else {
            Verdict::Pass
        }
    }
    fn poll_receive(&mut self, buf: &mut [u8]) -> Option<RxFrame> {
        let len = usize::from(self.inject.pop_front()?).min(buf.len());
        let bytes = frame_bytes(self.seq, len);
        self.seq += 1;
        buf[..len].copy_from_slice(&bytes);
        self.handed.borrow_mut().push(Handed {
            bytes,
            hdr: NetHdrRepr::default(),
        });
        Some(RxFrame {
            len,
            hdr: NetHdrRepr::default(),
        })
    }
}

/// A notifier that counts.
#[derive(Debug, Default)]
pub struct RecNotifier {
    /// Used-buffer notifications per queue.
    pub used: [u64; 2],
    /// Configuration-change notifications.
    pub config: u64,
}

impl Notifier for RecNotifier {
    fn used_buffer(&mut self, queue: u16) {
        if let Some(c) = self.used.get_mut(usize::from(queue)) {
            *c += 1;
        }
    }
    fn config_changed(&mut self) {
        self.config += 1;
    }
}

/// A device with one active queue, its driver, and the checks shared by
/// the `tx` and `rx` targets.
pub struct Rig<'r, const S: usize, const C: usize> {
    /// Guest RAM.
    pub ram: &'r GuestRam,
    /// The device's view of it, checked.
    pub mem: RecordingMemory<&'r RegionMemory<2>>,
    /// The device.
    pub dev: NetDevice<'static, RecBackend, RecInterceptor, S, C>,
    /// Its notifications.
    pub notes: RecNotifier,
    /// Frames handed to the device for the guest.
    pub handed: HandedLog,
    /// The driver of the active queue.
    pub drv: Driver,
    /// Which queue.
    pub queue: u16,
    /// Driver buffers.
    pub bump: Bump,
    /// No hostile move yet: contents can be checked.
    pub pristine: bool,
    /// The driver's feature wish.
    pub wish: u64,
    rx_pool: &'static FramePool<S, C>,
    tx_pool: &'static FramePool<S, C>,
}

impl<'r, const S: usize, const C: usize> Rig<'r, S, C> {
    /// A device over `ram` with its queue `queue` of `size` at `ring_at`
    /// (`None`: the start of RAM), activated. `None` when the layout is
    /// refused (then nothing may have been written).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ram: &'r GuestRam,
        cfg: NetConfig,
        caps: BackendCaps,
        wish: u64,
        queue: u16,
        size: u16,
        ring_at: Option<u64>,
        pools: (&'static FramePool<S, C>, &'static FramePool<S, C>),
    ) -> Option<Self> {
        assert_pool_full(pools.0, "rx pool at start");
        assert_pool_full(pools.1, "tx pool at start");
        let handed: HandedLog = Rc::default();
        let dev = NetDevice::new(
            cfg,
            RecBackend::new(caps, handed.clone()),
            RecInterceptor::new(handed.clone()),
            pools.0,
            pools.1,
        );
        let at = ring_at.unwrap_or(ram.base);
        let layout = packed_layout(at, size);
        let ring_end = layout.used_ring.0.wrapping_add(6 + 8 * u64::from(size));
        let (bump, pristine) = match ring_at {
            None => (Bump::new(ring_end, ram.base + ram.span), true),
            Some(_) => (Bump::new(ram.base, ram.base + ram.span), false),
        };
        let mut rig = Rig {
            ram,
            mem: ram.recording(),
            dev,
            notes: RecNotifier::default(),
            handed,
            drv: Driver::new(layout),
            queue,
            bump,
            pristine,
            wish,
            rx_pool: pools.0,
            tx_pool: pools.1,
        };
        rig.start().then_some(rig)
    }

    /// Negotiate, zero the rings, activate the queue, DRIVER_OK.
    fn start(&mut self) -> bool {
        let [f, safe] = driver_features(self.dev.offered_features(), self.wish);
        if self.dev.set_features(f).is_err() {
            self.dev
                .set_features(safe)
                .expect("the safe feature set is accepted");
        }
        let nf = self.dev.negotiated_features();
        assert!(nf.bits() & !self.dev.offered_features().bits() == 0);
        let layout = self.drv.layout;
        let zero = vec![
            0u8;
            (layout
                .used_ring
                .0
                .wrapping_add(6 + 8 * u64::from(layout.size)))
            .wrapping_sub(layout.desc_table.0)
            .min(1 << 20) as usize
        ];
        self.ram.poke(layout.desc_table.0, &zero);
        // Watched from activation on: in polling mode, activation writes
        // the used flags.
        self.mem.watch(
            usize::from(self.queue),
            layout,
            nf.contains(Features::RING_INDIRECT_DESC),
            0,
        );
        let writes = self.mem.write_counts().0;
        if self
            .dev
            .activate_queue(self.queue, layout, &self.mem)
            .is_err()
        {
            self.mem.assert_clean();
            assert_eq!(
                self.mem.write_counts().0,
                writes,
                "a refused layout wrote memory"
            );
            return false;
        }
        self.drv = Driver::new(layout);
        self.bump.reset();
        self.dev.set_active(true);
        true
    }

    /// Device reset (§2.4): no slot may stay taken, nothing may be written
    /// afterwards; then the driver starts over.
    pub fn reset(&mut self) {
        self.dev.reset();
        self.mem.unwatch_all();
        assert!(!self.dev.rx_pending());
        assert_pool_full(self.rx_pool, "rx pool after reset");
        assert_pool_full(self.tx_pool, "tx pool after reset");
        // A kick after reset touches nothing.
        let p = self
            .dev
            .process_queue(self.queue, &self.mem, &mut self.notes, 64);
        assert_eq!(p.handled, 0);
        self.mem.assert_clean();
        assert!(self.start(), "the same layout is accepted again");
    }

    /// Whether the queue is running (not broken).
    pub fn running(&self) -> bool {
        !self.dev.needs_reset()
    }

    /// The negotiated features.
    pub fn features(&self) -> Features {
        self.dev.negotiated_features()
    }

    /// A hostile chain: the driver writes `descs` (at most 64) into the
    /// descriptor table from slot `first` on, wrapping, and makes head
    /// `first` available. Contents are no longer checked afterwards.
    pub fn raw_chain(&mut self, first: u16, descs: &[DescSpec]) {
        self.pristine = false;
        let l = self.drv.layout;
        for (i, d) in descs.iter().take(64).enumerate() {
            let slot = (u64::from(first) + i as u64) % u64::from(l.size);
            self.ram
                .poke(l.desc_table.0 + 16 * slot, &d.bytes(self.ram));
        }
        self.drv.push_head(self.ram, first % l.size);
    }

    /// A kick of the rig's queue with `budget`, and what every kick must
    /// satisfy: no more than `budget` chains handled, nothing moved by a
    /// broken device, pool slots accounted for (I-FUZZ-4, I-POOL-5), no
    /// chain left in flight. The progress, or `None` once the queue broke.
    pub fn kick(&mut self, budget: usize) -> Option<Progress> {
        let was_running = self.running();
        let p = self
            .dev
            .process_queue(self.queue, &self.mem, &mut self.notes, budget);
        assert!(
            p.handled <= budget,
            "handled {} > budget {budget}",
            p.handled
        );
        if !was_running {
            assert_eq!(p.handled, 0, "a broken device moved frames");
        }
        assert_pools_accounted(
            self.rx_pool,
            self.tx_pool,
            self.dev.pool_slots_held(),
            "after a kick",
        );
        if !self.running() {
            return None;
        }
        let q = self.dev.queue(self.queue).expect("active");
        assert_eq!(q.in_flight(), 0, "chains left in flight");
        Some(p)
    }

    /// End of run: reset, and every slot is back.
    pub fn finish(mut self) {
        self.mem.assert_clean();
        self.dev.reset();
        assert_pool_full(self.rx_pool, "rx pool at the end");
        assert_pool_full(self.tx_pool, "tx pool at the end");
    }
}
