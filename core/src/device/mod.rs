//! The virtio-net device (VIRTIO 1.2 §5.1): two queues (RX 0, TX 1), feature
//! negotiation, config space, and the TX and RX paths between the guest's
//! queues and a [`Backend`].
//!
//! The device is transport-independent: the virtio-mmio block
//! ([`crate::mmio`]) or a vhost-user backend drives it, passing guest memory
//! and a [`Notifier`] into every call. Invariants: I-NET-1 .. I-NET-9 in
//! `specs/07-net-device.md`.

mod config;
mod seams;
mod stats;

pub use config::{
    offerable, validate, without_orphans, FeatureError, NetConfig, CONFIG_SPACE_SIZE,
    MAX_GSO_FRAME, SUPPORTED, VIRTIO_NET_S_LINK_UP,
};
pub use seams::{
    Backend, BackendCaps, BackendError, Interceptor, NoInterceptor, Notifier, RxFrame, Verdict,
};
pub use stats::NetStats;

use crate::features::Features;
use crate::mem::GuestMemory;
use crate::pool::{Frame, FramePool, DEFAULT_SLOT_COUNT, DEFAULT_SLOT_SIZE};
use crate::queue::{
    DescriptorChain, Head, LayoutError, Popped, QueueError, QueueFeatures, QueueLayout, SplitQueue,
    Virtqueue,
};
use crate::wire::net_hdr::hdr_from_words;
use crate::wire::net_hdr::{complete_checksum, header_len};
use crate::wire::NetHdrRepr;

/// Index of the receive queue.
pub const RX_QUEUE: u16 = 0;
/// Index of the transmit queue.
pub const TX_QUEUE: u16 = 1;
/// Number of queues (no control queue, no multiqueue).
pub const NUM_QUEUES: u16 = 2;
/// virtio device ID of a network card (§5.1.1).
pub const DEVICE_ID: u32 = 1;
/// Ethernet header length: shorter TX frames are malformed.
pub const ETH_HLEN: usize = 14;
/// Most buffers one merged RX frame may use.
pub const MAX_MERGED_BUFFERS: usize = 256;

/// How much a processing call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Progress {
    /// Chains (TX) or frames (RX) handled.
    pub handled: usize,
    /// The budget ran out with work left: call again.
    pub more: bool,
}

/// Why a queue could not be activated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ActivateError {
    /// No such queue.
    NoSuchQueue(u16),
    /// The layout failed validation.
    Layout(LayoutError),
    /// The rings overlap those of another active queue.
    OverlapsQueue(u16),
}

impl core::fmt::Display for ActivateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ActivateError::NoSuchQueue(q) => write!(f, "no queue {q}"),
            ActivateError::Layout(e) => write!(f, "{e}"),
            ActivateError::OverlapsQueue(q) => write!(f, "rings overlap those of queue {q}"),
        }
    }
}

impl core::error::Error for ActivateError {}

/// Whether any part of one queue's rings overlaps any part of the other's.
pub(crate) fn rings_overlap(a: &QueueLayout, b: &QueueLayout) -> bool {
    use crate::wire::ring::{avail_ring_bytes, desc_table_bytes, used_ring_bytes};
    let parts = |l: &QueueLayout| {
        [
            (l.desc_table.0, desc_table_bytes(l.size)),
            (l.avail_ring.0, avail_ring_bytes(l.size)),
            (l.used_ring.0, used_ring_bytes(l.size)),
        ]
    };
    parts(a).iter().any(|&(sa, la)| {
        parts(b)
            .iter()
            .any(|&(sb, lb)| sa < sb.saturating_add(lb) && sb < sa.saturating_add(la))
    })
}

enum Delivery {
    Delivered,
    NoBuffers,
    Dropped,
}

/// A virtio-net device.
///
/// `'p` is the lifetime of the two frame pools (RX and TX, `COUNT` slots of
/// `SLOT` bytes each) the device borrows. The device itself holds no guest
/// memory: every call that touches the guest takes `&M`.
pub struct NetDevice<
    'p,
    B,
    I = NoInterceptor,
    const SLOT: usize = DEFAULT_SLOT_SIZE,
    const COUNT: usize = DEFAULT_SLOT_COUNT,
> {
    /// The queues, apart from the rest so that a processing loop can borrow
    /// its queue and the rest at once (a queue is not moved out per call).
    queues: [Option<SplitQueue>; 2],
    dp: Datapath<'p, B, I, SLOT, COUNT>,
    chains: Chains,
}

/// The descriptor chains the processing loops walk into, kept with the
/// device: building a `DescriptorChain` on a call's stack zeroes its
/// kilobyte (the compiler merges the empty vector's undefined storage into
/// one `memset` with the zeroed fields), which a polling worker paid on
/// every pass, idle or not: 7 % of its time in a two-process loop
/// (specs/10-performance.md). A walk clears a chain before filling it.
#[derive(Default)]
struct Chains {
    tx: DescriptorChain,
    /// The first chain of a merged RX frame (it gets the header last).
    rx_first: DescriptorChain,
    rx: DescriptorChain,
}

/// A queue's processing loop: [`Datapath::tx_loop`] or [`Datapath::rx_loop`].
type Work<'p, B, I, M, const SLOT: usize, const COUNT: usize> = fn(
    &mut Datapath<'p, B, I, SLOT, COUNT>,
    &mut SplitQueue,
    &mut Chains,
    &M,
    usize,
) -> Result<Progress, QueueError>;

/// Everything of a [`NetDevice`] but its queues.
struct Datapath<'p, B, I, const SLOT: usize, const COUNT: usize> {
    config: NetConfig,
    offered: Features,
    negotiated: Features,
    hdr_len: usize,
    backend: B,
    interceptor: I,
    rx_pool: &'p FramePool<SLOT, COUNT>,
    tx_pool: &'p FramePool<SLOT, COUNT>,
    pending_rx: Option<(Frame<'p, SLOT, COUNT>, NetHdrRepr)>,
    /// A frame the backend lends ([`Backend::rx_peek`]) waits for guest
    /// buffers (it stays in the backend).
    rx_lent_waiting: bool,
    /// An idle TX slot kept from one processing call to the next (a pool
    /// round trip costs two critical sections per call).
    tx_slot: Option<Frame<'p, SLOT, COUNT>>,
    /// An idle RX slot kept likewise (the next frame is received into it).
    rx_slot: Option<Frame<'p, SLOT, COUNT>>,
    active: bool,
    polling: bool,
    needs_reset: bool,
    link_up: bool,
    config_generation: u32,
    stats: NetStats,
}

impl<'p, B: Backend, I: Interceptor, const SLOT: usize, const COUNT: usize>
    NetDevice<'p, B, I, SLOT, COUNT>
{
    /// A device with the given configuration, backend, interceptor and pools.
    pub fn new(
        config: NetConfig,
        backend: B,
        interceptor: I,
        rx_pool: &'p FramePool<SLOT, COUNT>,
        tx_pool: &'p FramePool<SLOT, COUNT>,
    ) -> Self {
        let offered = offerable(&config, SLOT, backend.caps());
        NetDevice {
            queues: [None, None],
            dp: Datapath {
                config,
                offered,
                negotiated: Features::empty(),
                hdr_len: header_len(Features::VERSION_1),
                backend,
                interceptor,
                rx_pool,
                tx_pool,
                pending_rx: None,
                rx_lent_waiting: false,
                tx_slot: None,
                rx_slot: None,
                active: false,
                polling: false,
                needs_reset: false,
                link_up: config.link_up,
                config_generation: 0,
                stats: NetStats::default(),
            },
            chains: Chains::default(),
        }
    }

    /// The features the device offers.
    pub fn offered_features(&self) -> Features {
        self.dp.offered
    }

    /// The features negotiated with the driver (empty before).
    pub fn negotiated_features(&self) -> Features {
        self.dp.negotiated
    }

    /// The configuration.
    pub fn config(&self) -> &NetConfig {
        &self.dp.config
    }

    /// Accept the driver's features if they are a valid subset of the offer
    /// (§2.2.2, §5.1.3.1). On error nothing changes.
    pub fn set_features(&mut self, driver: Features) -> Result<(), FeatureError> {
        let f = validate(driver, self.dp.offered)?;
        self.dp.negotiated = f;
        self.dp.hdr_len = header_len(f);
        self.dp.backend.set_offloads(f);
        vn_info!("virtio-net features negotiated: {:#x}", f.bits());
        Ok(())
    }

    /// Validate a queue's layout against guest memory and activate it.
    /// The queue takes its ring features from the negotiated set.
    pub fn activate_queue<M: GuestMemory + ?Sized>(
        &mut self,
        index: u16,
        layout: QueueLayout,
        mem: &M,
    ) -> Result<&mut SplitQueue, ActivateError> {
        let slot = self
            .queues
            .get_mut(usize::from(index))
            .ok_or(ActivateError::NoSuchQueue(index))?;
        let q = SplitQueue::new(
            layout,
            QueueFeatures::from_negotiated(self.dp.negotiated),
            self.dp.config.queue_size_max,
            mem,
        )
        .map_err(ActivateError::Layout)?;
        if self.dp.polling {
            // Best effort: a failure shows up at the first pop.
            let mut q2 = q;
            let _ = q2.disable_notifications(mem);
            return Ok(slot.insert(q2));
        }
        Ok(slot.insert(q))
    }

    /// The active queue (other than `index`) whose rings overlap `layout`.
    pub fn overlapping_queue(&self, index: u16, layout: &QueueLayout) -> Option<u16> {
        self.queues.iter().enumerate().find_map(|(other, q)| {
            let q = q.as_ref()?;
            (other != usize::from(index) && rings_overlap(&q.layout(), layout))
                .then(|| u16::try_from(other).unwrap_or(u16::MAX))
        })
    }

    /// Stop a queue and hand back its state (vhost-user `GET_VRING_BASE`).
    pub fn deactivate_queue(&mut self, index: u16) -> Option<SplitQueue> {
        self.queues.get_mut(usize::from(index))?.take()
    }

    /// A queue, if active.
    pub fn queue(&self, index: u16) -> Option<&SplitQueue> {
        self.queues.get(usize::from(index))?.as_ref()
    }

    /// A queue, if active, mutably (to set vhost-user ring indices).
    pub fn queue_mut(&mut self, index: u16) -> Option<&mut SplitQueue> {
        self.queues.get_mut(usize::from(index))?.as_mut()
    }

    /// Start (DRIVER_OK) or stop moving frames. Before this, kicks consume
    /// nothing (§2.1.2).
    pub fn set_active(&mut self, active: bool) {
        self.dp.active = active;
    }

    /// Whether the device moves frames.
    pub fn is_active(&self) -> bool {
        self.dp.active
    }

    /// Busy-poll mode: ask the driver not to notify (§2.7.10).
    pub fn set_polling<M: GuestMemory + ?Sized>(&mut self, polling: bool, mem: &M) {
        self.dp.polling = polling;
        for q in self.queues.iter_mut().flatten() {
            let _ = if polling {
                q.disable_notifications(mem)
            } else {
                q.enable_notifications(mem).map(|_| ())
            };
        }
    }

    /// Reset (§2.4): drop the queues and any frame in hand (a frame a
    /// lending backend lent and that waits for buffers is consumed, that
    /// is dropped), give every pool slot back, forget the negotiated
    /// features. Nothing is written to guest memory afterwards.
    pub fn reset(&mut self) {
        self.queues = [None, None];
        self.dp.pending_rx = None;
        if self.dp.rx_lent_waiting {
            // Dropped like a frame waiting in a slot: the backend lent it
            // to this device's RX queue, which is gone.
            self.dp.backend.rx_consume();
            self.dp.rx_lent_waiting = false;
        }
        self.release_slots();
        self.dp.negotiated = Features::empty();
        self.dp.hdr_len = header_len(Features::VERSION_1);
        self.dp.active = false;
        self.dp.needs_reset = false;
    }

    /// Whether a queue broke and the device needs a reset
    /// (DEVICE_NEEDS_RESET, §2.1.2).
    pub fn needs_reset(&self) -> bool {
        self.dp.needs_reset
    }

    /// The link state.
    pub fn link_up(&self) -> bool {
        self.dp.link_up
    }

    /// Change the link state; raises a configuration-change notification
    /// when it changes and the driver is running.
    pub fn set_link_up<N: Notifier + ?Sized>(&mut self, up: bool, notifier: &mut N) {
        if up == self.dp.link_up {
            return;
        }
        self.dp.link_up = up;
        self.dp.config_generation = self.dp.config_generation.wrapping_add(1);
        vn_info!("virtio-net link {}", if up { "up" } else { "down" });
        if self.dp.active {
            notifier.config_changed();
        }
    }

    /// The config generation (§2.5.1): changes whenever config space does.
    pub fn config_generation(&self) -> u32 {
        self.dp.config_generation
    }

    /// Read config space (§5.1.4) at `offset` into `data`; bytes beyond the
    /// config space read as 0.
    pub fn read_config(&self, offset: usize, data: &mut [u8]) {
        let cfg = config::config_bytes(&self.dp.config, self.dp.link_up);
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i)
                .and_then(|o| cfg.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    /// The counters.
    pub fn stats(&self) -> &NetStats {
        &self.dp.stats
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.dp.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.dp.backend
    }

    /// The interceptor, mutably.
    pub fn interceptor_mut(&mut self) -> &mut I {
        &mut self.dp.interceptor
    }

    /// Whether an RX frame is waiting for guest buffers (in a pool slot,
    /// or in the backend that lends it).
    pub fn rx_pending(&self) -> bool {
        self.dp.pending_rx.is_some() || self.dp.rx_lent_waiting
    }

    /// Pool slots the device holds between calls: `(rx, tx)`. RX: the
    /// frame waiting for buffers, if any, and one idle slot; TX: one idle
    /// slot. Each idle slot is taken the first time a call needs it and
    /// kept, so steady traffic costs no pool round trip (I-POOL-5).
    /// [`NetDevice::reset`] and [`NetDevice::release_slots`] give them back,
    /// after which the pools are as full as before the device ran.
    pub fn pool_slots_held(&self) -> (usize, usize) {
        (
            usize::from(self.dp.pending_rx.is_some())
                .saturating_add(usize::from(self.dp.rx_slot.is_some())),
            usize::from(self.dp.tx_slot.is_some()),
        )
    }

    /// Give the idle slots (not a waiting RX frame) back to their pools,
    /// for an embedder that shares the pools between devices and wants
    /// them back while this one is quiet.
    pub fn release_slots(&mut self) {
        self.dp.tx_slot = None;
        self.dp.rx_slot = None;
    }

    /// Process a queue after a kick (QueueNotify / kick eventfd). Spurious
    /// kicks and kicks before activation do nothing (§2.7.10.2).
    pub fn process_queue<M: GuestMemory + ?Sized, N: Notifier + ?Sized>(
        &mut self,
        index: u16,
        mem: &M,
        notifier: &mut N,
        budget: usize,
    ) -> Progress {
        match index {
            TX_QUEUE => self.process_tx(mem, notifier, budget),
            RX_QUEUE => self.process_rx(mem, notifier, budget),
            _ => Progress::default(),
        }
    }

    /// Run one queue's processing loop on the queue and the rest of the
    /// device (borrowed apart), publish and notify, and turn a ring error
    /// into DEVICE_NEEDS_RESET.
    fn run_queue<M: GuestMemory + ?Sized, N: Notifier + ?Sized>(
        &mut self,
        index: u16,
        mem: &M,
        notifier: &mut N,
        budget: usize,
        work: Work<'p, B, I, M, SLOT, COUNT>,
    ) -> Progress {
        if !self.dp.active || self.dp.needs_reset {
            return Progress::default();
        }
        let Some(q) = self
            .queues
            .get_mut(usize::from(index))
            .and_then(Option::as_mut)
        else {
            return Progress::default();
        };
        let dp = &mut self.dp;
        let used_before = q.next_used();
        let r = work(dp, q, &mut self.chains, mem, budget)
            .and_then(|p| dp.finish(q, index, used_before, mem, notifier).map(|()| p));
        r.unwrap_or_else(|e| {
            dp.fail(e, notifier);
            Progress::default()
        })
    }

    /// Move frames the guest sent to the interceptor or backend: at most
    /// `budget` chains (I-NET-3).
    pub fn process_tx<M: GuestMemory + ?Sized, N: Notifier + ?Sized>(
        &mut self,
        mem: &M,
        notifier: &mut N,
        budget: usize,
    ) -> Progress {
        self.run_queue(TX_QUEUE, mem, notifier, budget, Datapath::tx_loop)
    }

    /// Move frames from the interceptor and the backend into the guest's RX
    /// buffers: at most `budget` frames. A frame that finds no buffers waits
    /// in its pool slot and goes first next time (I-NET-6, CVE-2020-16843).
    pub fn process_rx<M: GuestMemory + ?Sized, N: Notifier + ?Sized>(
        &mut self,
        mem: &M,
        notifier: &mut N,
        budget: usize,
    ) -> Progress {
        self.run_queue(RX_QUEUE, mem, notifier, budget, Datapath::rx_loop)
    }
}

impl<'p, B: Backend, I: Interceptor, const SLOT: usize, const COUNT: usize>
    Datapath<'p, B, I, SLOT, COUNT>
{
    fn fail<N: Notifier + ?Sized>(&mut self, e: QueueError, notifier: &mut N) {
        self.stats.queue_errors = self.stats.queue_errors.saturating_add(1);
        if !self.needs_reset {
            vn_warn!("virtio-net queue broken, device needs reset: {:?}", e);
            self.needs_reset = true;
            notifier.config_changed();
        }
    }

    /// Publish used entries and notify the driver if it wants it.
    fn finish<M: GuestMemory + ?Sized, N: Notifier + ?Sized>(
        &mut self,
        q: &mut SplitQueue,
        index: u16,
        used_before: u16,
        mem: &M,
        notifier: &mut N,
    ) -> Result<(), QueueError> {
        if q.next_used() == used_before {
            return Ok(());
        }
        q.publish_used(mem)?;
        if q.needs_notification(mem)? {
            notifier.used_buffer(index);
            self.stats.notifications = self.stats.notifications.saturating_add(1);
        } else {
            self.stats.notifications_suppressed =
                self.stats.notifications_suppressed.saturating_add(1);
        }
        Ok(())
    }

    fn tx_loop<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut SplitQueue,
        chains: &mut Chains,
        mem: &M,
        budget: usize,
    ) -> Result<Progress, QueueError> {
        // One pool slot serves every frame, kept across calls: a pool round
        // trip costs two critical sections.
        let mut slot = self.tx_slot.take();
        let r = self.tx_frames(q, &mut chains.tx, mem, budget, &mut slot);
        self.tx_slot = slot;
        r
    }

    fn tx_frames<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut SplitQueue,
        chain: &mut DescriptorChain,
        mem: &M,
        budget: usize,
        slot: &mut Option<Frame<'p, SLOT, COUNT>>,
    ) -> Result<Progress, QueueError> {
        // An idle queue costs one avail-idx load.
        if !q.has_available(mem)? && (self.polling || !q.enable_notifications(mem)?) {
            return Ok(Progress::default());
        }
        let mut handled = 0usize;
        loop {
            while handled < budget {
                q.prefetch_ahead(mem, false);
                match q.pop(mem, chain)? {
                    None => break,
                    Some(Popped::Malformed(head, _)) => {
                        self.stats.tx_malformed_chains =
                            self.stats.tx_malformed_chains.saturating_add(1);
                        q.add_used(mem, head, 0)?;
                    }
                    Some(Popped::Chain(head)) => {
                        self.tx_one(mem, chain, slot);
                        q.add_used(mem, head, 0)?;
                    }
                }
                handled = handled.saturating_add(1);
            }
            if handled >= budget {
                return Ok(Progress {
                    handled,
                    more: true,
                });
            }
            if self.polling || !q.enable_notifications(mem)? {
                return Ok(Progress {
                    handled,
                    more: false,
                });
            }
        }
    }

    /// One TX chain: header, frame into a pool slot, checksum, interceptor,
    /// backend. Every failure is a counted drop (I-NET-4).
    fn tx_one<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        chain: &DescriptorChain,
        slot: &mut Option<Frame<'p, SLOT, COUNT>>,
    ) {
        let hdr_len = self.hdr_len;
        let total = chain.readable_len() as usize;
        let Some(frame_len) = total.checked_sub(hdr_len) else {
            self.stats.tx_malformed_frames = self.stats.tx_malformed_frames.saturating_add(1);
            return;
        };
        if frame_len < ETH_HLEN || chain.writable_len() != 0 {
            self.stats.tx_malformed_frames = self.stats.tx_malformed_frames.saturating_add(1);
            return;
        }
        if frame_len > SLOT {
            self.stats.tx_too_big = self.stats.tx_too_big.saturating_add(1);
            return;
        }
        // Read the header exactly once, whatever its split (CVE-2022-2132).
        let mut raw = [0u8; 12];
        let read = if hdr_len == 12 {
            chain.read_array(mem, 0, &mut raw)
        } else {
            match raw.get_mut(..hdr_len) {
                Some(h) => matches!(chain.read_at(mem, 0, h), Ok(n) if n == hdr_len),
                None => false,
            }
        };
        if !read {
            self.stats.tx_malformed_frames = self.stats.tx_malformed_frames.saturating_add(1);
            return;
        }
        // The usual header (no offload) is a constant: nothing is built on
        // the stack for it (a repr built field by field and then copied
        // whole stalls the load that copies it: store forwarding fails).
        if NetHdrRepr::is_plain_tx(&raw) {
            self.tx_frame(mem, chain, slot, frame_len, &NetHdrRepr::PLAIN);
            return;
        }
        // `parse_tx_bytes` without its plain test, made just above.
        match NetHdrRepr::parse_tx_offload_bytes(&raw, frame_len, self.negotiated) {
            Ok(repr) => self.tx_frame(mem, chain, slot, frame_len, &repr),
            Err(_e) => {
                vn_debug!("tx header refused: {:?}", _e);
                self.stats.tx_bad_header = self.stats.tx_bad_header.saturating_add(1);
            }
        }
    }

    /// The rest of [`Datapath::tx_one`] once the header is parsed: the
    /// frame into the backend's storage or a pool slot, checksum,
    /// interceptor, backend.
    #[inline(always)]
    fn tx_frame<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        chain: &DescriptorChain,
        slot: &mut Option<Frame<'p, SLOT, COUNT>>,
        frame_len: usize,
        repr: &NetHdrRepr,
    ) {
        let hdr_len = self.hdr_len;
        let sw_csum = repr.csum.is_some() && repr.gso.is_none() && !self.backend.caps().tx_csum;
        // Zero-copy: straight into the backend's storage when it lends it;
        // else into the pool slot kept for TX.
        let (dst, lent) = match self.backend.tx_buffer(frame_len) {
            Some(buf) => {
                let Some(dst) = buf.get_mut(..frame_len) else {
                    // Lent less than asked: the backend's fault, counted.
                    self.stats.tx_backend_errors = self.stats.tx_backend_errors.saturating_add(1);
                    return;
                };
                (dst, true)
            }
            None => {
                if slot.is_none() {
                    *slot = self.tx_pool.acquire();
                }
                let Some(frame) = slot.as_mut() else {
                    self.stats.tx_backend_errors = self.stats.tx_backend_errors.saturating_add(1);
                    return;
                };
                let Some(dst) = frame.buffer_mut().get_mut(..frame_len) else {
                    return;
                };
                (dst, false)
            }
        };
        // `dst` borrows the backend or the slot; the counters and the
        // interceptor are other fields.
        if !matches!(chain.read_at(mem, hdr_len, dst), Ok(n) if n == frame_len) {
            self.stats.tx_malformed_frames = self.stats.tx_malformed_frames.saturating_add(1);
            return;
        }
        let completed;
        let mut repr = repr;
        if let Some(c) = repr.csum.filter(|_| sw_csum) {
            if complete_checksum(dst, c).is_err() {
                self.stats.tx_bad_header = self.stats.tx_bad_header.saturating_add(1);
                return;
            }
            completed = NetHdrRepr {
                csum: None,
                ..*repr
            };
            repr = &completed;
            self.stats.tx_sw_checksums = self.stats.tx_sw_checksums.saturating_add(1);
        }
        if self.interceptor.on_transmit(dst) == Verdict::Consumed {
            self.stats.tx_intercepted = self.stats.tx_intercepted.saturating_add(1);
            return;
        }
        let r = if lent {
            self.backend.tx_commit(repr, frame_len)
        } else {
            match slot
                .as_mut()
                .and_then(|f| f.set_len(frame_len).then_some(f))
            {
                Some(frame) => self.backend.transmit(repr, frame.as_slice()),
                None => {
                    self.stats.tx_malformed_frames =
                        self.stats.tx_malformed_frames.saturating_add(1);
                    return;
                }
            }
        };
        match r {
            Ok(()) => {
                // 64-bit counters: wrapping is exact for centuries.
                self.stats.tx_packets = self.stats.tx_packets.wrapping_add(1);
                self.stats.tx_bytes = self.stats.tx_bytes.wrapping_add(frame_len as u64);
            }
            Err(_) => {
                self.stats.tx_backend_errors = self.stats.tx_backend_errors.saturating_add(1);
            }
        }
    }

    /// Put the next frame for the guest in `cur`, or say where it is: the
    /// one waiting in a slot, else a lent one waiting for buffers (in the
    /// backend), else the interceptor's (into the slot already in `cur`,
    /// kept from the previous frame: frames stay in place, no pool round
    /// trip, or a newly acquired one), else the backend's
    /// ([`Next::Backend`]: the caller takes it lent or with
    /// [`Datapath::receive_into_slot`]). `Err(())` means a frame was dropped
    /// (counted) and the caller should look again.
    #[allow(clippy::result_unit_err)]
    fn next_rx_frame(&mut self, cur: &mut Option<Frame<'p, SLOT, COUNT>>) -> Result<Next, ()> {
        if let Some((frame, hdr)) = self.pending_rx.take() {
            *cur = Some(frame);
            return Ok(Next::Slot(hdr));
        }
        // A lent frame that waits for buffers goes first too, before the
        // interceptor's (as one waiting in a slot would).
        if self.rx_lent_waiting {
            if self.backend.rx_peek().is_some() {
                return Ok(Next::Backend);
            }
            self.rx_lent_waiting = false;
        }
        let Some(slot) = self.slot_in_hand(cur) else {
            return Ok(Next::None);
        };
        match self.interceptor.poll_receive(slot.buffer_mut()) {
            Some(f) => {
                self.stats.rx_intercepted = self.stats.rx_intercepted.saturating_add(1);
                self.slot_frame(slot, f).map(Next::Slot)
            }
            None => Ok(Next::Backend),
        }
    }

    /// The RX slot in `cur`, acquired from the pool when there is none
    /// (`None`: the pool is empty).
    #[inline(always)]
    fn slot_in_hand<'c>(
        &self,
        cur: &'c mut Option<Frame<'p, SLOT, COUNT>>,
    ) -> Option<&'c mut Frame<'p, SLOT, COUNT>> {
        if cur.is_none() {
            *cur = self.rx_pool.acquire();
        }
        cur.as_mut()
    }

    /// The backend's next frame, received into the slot in `cur` (a frame
    /// it does not lend, or one to fix up there).
    #[allow(clippy::result_unit_err)]
    fn receive_into_slot(&mut self, cur: &mut Option<Frame<'p, SLOT, COUNT>>) -> Result<Next, ()> {
        self.rx_lent_waiting = false;
        let Some(slot) = self.slot_in_hand(cur) else {
            return Ok(Next::None);
        };
        match self.backend.receive(slot.buffer_mut()) {
            Ok(Some(f)) => self.slot_frame(slot, f).map(Next::Slot),
            Ok(None) => Ok(Next::None),
            Err(_) => {
                self.stats.rx_backend_errors = self.stats.rx_backend_errors.saturating_add(1);
                Err(())
            }
        }
    }

    /// A frame just written into `slot`: its length set and the offloads
    /// the driver did not negotiate undone (checksum completed in software;
    /// segmentation cannot be, so the frame is dropped). Its header, or
    /// `Err(())` when it was dropped (counted).
    #[allow(clippy::result_unit_err)]
    fn slot_frame(
        &mut self,
        slot: &mut Frame<'p, SLOT, COUNT>,
        got: RxFrame,
    ) -> Result<NetHdrRepr, ()> {
        if !slot.set_len(got.len) {
            self.stats.rx_backend_errors = self.stats.rx_backend_errors.saturating_add(1);
            return Err(());
        }
        let mut hdr = got.hdr;
        if !self.negotiated.contains(hdr.rx_requirements()) {
            if hdr.gso.is_some() {
                self.stats.rx_offload_dropped = self.stats.rx_offload_dropped.saturating_add(1);
                return Err(());
            }
            if let Some(c) = hdr.csum.take() {
                if complete_checksum(slot.as_mut_slice(), c).is_err() {
                    self.stats.rx_offload_dropped = self.stats.rx_offload_dropped.saturating_add(1);
                    return Err(());
                }
            }
            hdr.data_valid = false;
        }
        Ok(hdr)
    }

    fn rx_loop<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut SplitQueue,
        chains: &mut Chains,
        mem: &M,
        budget: usize,
    ) -> Result<Progress, QueueError> {
        // The slot of a delivered frame receives the next one, and is kept
        // across calls (a pool round trip costs two critical sections).
        let mut cur = self.rx_slot.take();
        let r = self.rx_frames(q, chains, mem, budget, &mut cur);
        self.rx_slot = cur;
        r
    }

    fn rx_frames<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut SplitQueue,
        chains: &mut Chains,
        mem: &M,
        budget: usize,
        cur: &mut Option<Frame<'p, SLOT, COUNT>>,
    ) -> Result<Progress, QueueError> {
        let mut handled = 0usize;
        let mut retries = 0usize;
        let Chains {
            rx_first: first,
            rx: chain,
            ..
        } = chains;
        let merged = self.negotiated.contains(Features::MRG_RXBUF);
        while handled < budget {
            let next = match self.next_rx_frame(cur) {
                Ok(n) => n,
                Err(()) => {
                    // A dropped frame is work done too (bounded by budget).
                    handled = handled.saturating_add(1);
                    continue;
                }
            };
            // The backend's frame, lent when it needs no fixing up (one
            // `rx_peek`): delivered straight from the backend's storage,
            // which `rx` does not borrow (it holds the counters).
            let mut lent = None;
            if let Next::Backend = next {
                let negotiated = self.negotiated;
                let lendable = self
                    .backend
                    .rx_peek()
                    .filter(|(_, h)| negotiated.contains(h.rx_requirements()));
                if let Some((f, hdr)) = lendable {
                    let mut rx = RxCtx {
                        hdr_len: self.hdr_len,
                        stats: &mut self.stats,
                    };
                    let d = rx.deliver(q, mem, f, &hdr, merged, first, chain)?;
                    lent = Some((d, f.len()));
                }
            }
            let (d, len, slot_hdr) = match lent {
                Some((d, len)) => (d, len, None),
                None => {
                    let next = match next {
                        Next::Backend => match self.receive_into_slot(cur) {
                            Ok(n) => n,
                            Err(()) => {
                                handled = handled.saturating_add(1);
                                continue;
                            }
                        },
                        n => n,
                    };
                    let (Next::Slot(hdr), Some(frame)) = (next, cur.as_ref()) else {
                        return Ok(Progress {
                            handled,
                            more: false,
                        });
                    };
                    let f = frame.as_slice();
                    let mut rx = RxCtx {
                        hdr_len: self.hdr_len,
                        stats: &mut self.stats,
                    };
                    let d = rx.deliver(q, mem, f, &hdr, merged, first, chain)?;
                    (d, f.len(), Some(hdr))
                }
            };
            let lent = slot_hdr.is_none();
            match d {
                Delivery::Delivered | Delivery::Dropped => {
                    if let Delivery::Delivered = d {
                        // 64-bit counters: wrapping is exact for centuries.
                        self.stats.rx_packets = self.stats.rx_packets.wrapping_add(1);
                        self.stats.rx_bytes = self.stats.rx_bytes.wrapping_add(len as u64);
                    }
                    if lent {
                        self.rx_lent_waiting = false;
                        self.backend.rx_consume();
                    }
                }
                Delivery::NoBuffers => {
                    self.stats.rx_waits_for_buffers =
                        self.stats.rx_waits_for_buffers.saturating_add(1);
                    match slot_hdr {
                        // The frame stays in the backend, lent again next time.
                        None => self.rx_lent_waiting = true,
                        Some(hdr) => self.pending_rx = cur.take().map(|f| (f, hdr)),
                    }
                    // Ask for a kick when buffers arrive; go on only if new
                    // ones arrived meanwhile (not the ones just given back),
                    // and never more often than the budget allows.
                    let seen = q.avail_idx_seen();
                    retries = retries.saturating_add(1);
                    if self.polling
                        || retries > budget
                        || !q.enable_notifications(mem)?
                        || q.avail_idx_seen() == seen
                    {
                        return Ok(Progress {
                            handled,
                            more: false,
                        });
                    }
                    continue;
                }
            }
            handled = handled.saturating_add(1);
        }
        Ok(Progress {
            handled,
            more: true,
        })
    }
}

/// Where the next RX frame is.
#[derive(Clone, Copy)]
enum Next {
    /// None waiting.
    None,
    /// In the slot in hand, with its header.
    Slot(NetHdrRepr),
    /// In the backend: lent ([`Backend::rx_peek`]) or received into the
    /// slot.
    Backend,
}

/// What RX delivery needs of the device: the header length and the
/// counters, borrowed apart from the backend (a lent frame lives in the
/// backend's storage while it is delivered).
struct RxCtx<'s> {
    hdr_len: usize,
    stats: &'s mut NetStats,
}

impl RxCtx<'_> {
    /// Deliver one frame, merged (MRG_RXBUF) or into one chain.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn deliver<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut SplitQueue,
        mem: &M,
        frame: &[u8],
        hdr: &NetHdrRepr,
        merged: bool,
        first: &mut DescriptorChain,
        chain: &mut DescriptorChain,
    ) -> Result<Delivery, QueueError> {
        if merged {
            self.deliver_merged(q, mem, frame, hdr, first, chain)
        } else {
            self.deliver_single(q, mem, frame, hdr, chain)
        }
    }

    #[inline(always)]
    fn header_words(&self, hdr: &NetHdrRepr, num_buffers: u16) -> ((u64, u32), usize) {
        (hdr.emit_rx_words(num_buffers), self.hdr_len)
    }

    /// A chain the RX path cannot use: read-only parts, or no room for the
    /// header (cases 43, 47).
    fn rx_chain_ok(&self, chain: &DescriptorChain, first: bool) -> bool {
        chain.readable_len() == 0
            && chain.writable_len() > 0
            && (!first || chain.writable_len() as usize >= self.hdr_len)
    }

    /// Without MRG_RXBUF: the whole frame in one chain, or dropped
    /// (case 44) with the chain left for the next frame.
    fn deliver_single<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut SplitQueue,
        mem: &M,
        frame: &[u8],
        hdr: &NetHdrRepr,
        chain: &mut DescriptorChain,
    ) -> Result<Delivery, QueueError> {
        let Some(head) = self.pop_first(q, mem, chain)? else {
            return Ok(Delivery::NoBuffers);
        };
        let total = self.hdr_len.saturating_add(frame.len());
        if (chain.writable_len() as usize) < total {
            self.stats.rx_too_big = self.stats.rx_too_big.saturating_add(1);
            if let Err(head) = q.undo_pop(head) {
                q.add_used(mem, head, 0)?;
            }
            return Ok(Delivery::Dropped);
        }
        let (h, hl) = self.header_words(hdr, 1);
        let wrote_hdr = write_header(chain, mem, h, hl);
        let wrote = chain.write_at(mem, hl, frame);
        if !wrote_hdr || !matches!(wrote, Ok(n) if n == frame.len()) {
            // The buffers were validated; memory vanished under us.
            q.add_used(mem, head, 0)?;
            return Ok(Delivery::Dropped);
        }
        q.add_used(mem, head, u32::try_from(total).unwrap_or(u32::MAX))?;
        Ok(Delivery::Delivered)
    }

    /// Pop the first chain of a frame into `chain`: one that can take the
    /// header. Bad ones are returned with len 0 (counted) and the next is
    /// tried; `None` when the ring runs out.
    #[inline(always)]
    fn pop_first<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut SplitQueue,
        mem: &M,
        chain: &mut DescriptorChain,
    ) -> Result<Option<Head>, QueueError> {
        loop {
            q.prefetch_ahead(mem, true);
            match q.pop(mem, chain)? {
                None => return Ok(None),
                Some(Popped::Malformed(head, _)) => self.rx_bad_chain(q, mem, head)?,
                Some(Popped::Chain(head)) if self.rx_chain_ok(chain, true) => {
                    return Ok(Some(head))
                }
                Some(Popped::Chain(head)) => self.rx_bad_chain(q, mem, head)?,
            }
        }
    }

    fn rx_bad_chain<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut SplitQueue,
        mem: &M,
        head: Head,
    ) -> Result<(), QueueError> {
        self.stats.rx_malformed_chains = self.stats.rx_malformed_chains.saturating_add(1);
        q.add_used(mem, head, 0)
    }

    /// With MRG_RXBUF (§5.1.6.4): spread header + frame over as many chains
    /// as needed, each filled completely but the last; num_buffers written
    /// before any used entry is added; nothing published if buffers run out
    /// (cases 45, 46; CVE-2021-3748, CVE-2018-16880). A frame that fits the
    /// first chain (the usual case: Linux posts buffers of at least 1,536
    /// bytes) takes the one-chain path, without collecting heads.
    fn deliver_merged<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut SplitQueue,
        mem: &M,
        frame: &[u8],
        hdr: &NetHdrRepr,
        first: &mut DescriptorChain,
        chain: &mut DescriptorChain,
    ) -> Result<Delivery, QueueError> {
        let hl = self.hdr_len;
        // The first chain holds the header.
        let Some(head) = self.pop_first(q, mem, first)? else {
            return Ok(Delivery::NoBuffers);
        };
        let total = hl.saturating_add(frame.len());
        if first.writable_len() as usize >= total {
            if !matches!(first.write_at(mem, hl, frame), Ok(n) if n == frame.len()) {
                self.rx_bad_chain(q, mem, head)?;
                return Ok(Delivery::Dropped);
            }
            let (h, _) = self.header_words(hdr, 1);
            if !write_header(first, mem, h, hl) {
                q.add_used(mem, head, 0)?;
                return Ok(Delivery::Dropped);
            }
            q.add_used(mem, head, u32::try_from(total).unwrap_or(u32::MAX))?;
            return Ok(Delivery::Delivered);
        }
        self.deliver_spread(q, mem, frame, hdr, head, first, chain)
    }

    /// [`RxCtx::deliver_merged`] for a frame longer than its first chain
    /// (`head`, popped into `first`): the rest goes into as many more
    /// chains as it needs.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn deliver_spread<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut SplitQueue,
        mem: &M,
        frame: &[u8],
        hdr: &NetHdrRepr,
        head: Head,
        first: &DescriptorChain,
        chain: &mut DescriptorChain,
    ) -> Result<Delivery, QueueError> {
        let mut heads: heapless::Vec<(Head, u32), MAX_MERGED_BUFFERS> = heapless::Vec::new();
        let hl = self.hdr_len;
        let mut off = match first.write_at(mem, hl, frame) {
            Ok(n) => n,
            Err(_) => return self.abort_merged(q, mem, heads, Some(head)),
        };
        let used = u32::try_from(hl.saturating_add(off)).unwrap_or(u32::MAX);
        // Cannot fail: the vector is empty and holds at least one.
        if let Err((head, _)) = heads.push((head, used)) {
            return self.abort_merged(q, mem, heads, Some(head));
        }
        while off < frame.len() {
            q.prefetch_ahead(mem, true);
            let head = match q.pop(mem, chain)? {
                None => {
                    // Give everything back untouched by the driver's view.
                    while let Some((h, _)) = heads.pop() {
                        if let Err(h) = q.undo_pop(h) {
                            q.add_used(mem, h, 0)?;
                        }
                    }
                    return Ok(Delivery::NoBuffers);
                }
                Some(Popped::Malformed(head, _)) => {
                    return self.abort_merged(q, mem, heads, Some(head));
                }
                Some(Popped::Chain(head)) => head,
            };
            if !self.rx_chain_ok(chain, false) {
                return self.abort_merged(q, mem, heads, Some(head));
            }
            let rest = frame.get(off..).unwrap_or(&[]);
            let n = match chain.write_at(mem, 0, rest) {
                Ok(n) => n,
                Err(_) => return self.abort_merged(q, mem, heads, Some(head)),
            };
            off = off.saturating_add(n);
            let used = u32::try_from(n).unwrap_or(u32::MAX);
            if let Err((head, _)) = heads.push((head, used)) {
                // More buffers than any sane frame needs: drop it.
                self.stats.rx_too_big = self.stats.rx_too_big.saturating_add(1);
                q.add_used(mem, head, 0)?;
                return self.abort_merged(q, mem, heads, None);
            }
        }
        let count = u16::try_from(heads.len()).unwrap_or(u16::MAX);
        let (h, _) = self.header_words(hdr, count);
        if !write_header(first, mem, h, hl) {
            return self.abort_merged(q, mem, heads, None);
        }
        // In buffer order, without moving the 2 KiB vector into an iterator.
        heads.reverse();
        while let Some((head, used)) = heads.pop() {
            q.add_used(mem, head, used)?;
        }
        Ok(Delivery::Delivered)
    }

    /// A merged delivery went wrong part-way (a malformed chain among good
    /// ones): return every collected head and the bad one with len 0, drop
    /// the frame.
    fn abort_merged<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut SplitQueue,
        mem: &M,
        heads: heapless::Vec<(Head, u32), MAX_MERGED_BUFFERS>,
        bad: Option<Head>,
    ) -> Result<Delivery, QueueError> {
        for (h, _) in heads {
            q.add_used(mem, h, 0)?;
        }
        if let Some(bad) = bad {
            self.rx_bad_chain(q, mem, bad)?;
        }
        Ok(Delivery::Dropped)
    }
}

/// Write the first `hl` bytes of the header `h` (as
/// [`NetHdrRepr::emit_rx_words`] gives it) at the start of the chain's
/// writable part; whether all of them were written. The usual 12-byte
/// header is a constant-length write (plain stores, no `memcpy` call). Out
/// of line, so the header arrives as two whole words whatever the caller
/// built it from (specs/10-performance.md, sixth round).
#[inline(never)]
fn write_header<M: GuestMemory + ?Sized>(
    chain: &DescriptorChain,
    mem: &M,
    h: (u64, u32),
    hl: usize,
) -> bool {
    let h = hdr_from_words(h);
    if hl == 12 {
        return chain.write_array(mem, 0, &h);
    }
    let r = chain.write_at(mem, 0, h.get(..hl).unwrap_or(&[]));
    matches!(r, Ok(n) if n == hl)
}

#[cfg(test)]
mod tests;
