//! The vhost-user device state and its request handler.
//!
//! [`DeviceState`] is what one vhost-user backend knows: the core's
//! [`NetDevice`], the frontend's memory, and the per-ring settings the
//! frontend sent. rust-vmm's `vhost` crate parses the messages and calls the
//! [`VhostUserBackendReqHandlerMut`] methods here (through its
//! `Mutex<DeviceState>` adapter); the queue-pair worker locks the same mutex
//! to move frames. Whoever holds the lock owns the device, so a control
//! message never sees a ring half-processed, and memory is only replaced or
//! unmapped while the worker is outside (I-HOST-1).
//!
//! vhost-user rules kept here (see `specs/08-hosted.md`):
//! - a ring starts when it has a kick fd (`SET_VRING_KICK`), is enabled
//!   (rings start disabled once `VHOST_USER_F_PROTOCOL_FEATURES` is
//!   negotiated), and has a size, addresses and memory;
//! - `SET_VRING_BASE` gives next_avail; the used index is read from the used
//!   ring itself when the ring starts;
//! - `GET_VRING_BASE` stops the ring and answers next_avail;
//! - there is no DRIVER_OK: the device is active while any ring runs.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    Error as VuError, GpuBackend, Result as VuResult, VhostUserBackendReqHandlerMut,
};
use vhost::VhostUserMemoryRegionBase;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use virtnet::device::{NetConfig, NetDevice, NetStats, NoInterceptor, Notifier, NUM_QUEUES};
use virtnet::features::Features;
use virtnet::mem::RegionMemory;
use virtnet::pool::FramePool;
use virtnet::queue::QueueLayout;

use crate::backend::HostBackend;
use crate::memory::{GuestMemoryMap, TableEntry};

/// `VHOST_USER_F_PROTOCOL_FEATURES` (bit 30 of the virtio feature word).
pub const PROTOCOL_FEATURES_BIT: u64 = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

/// The protocol features this backend offers (`REPLY_ACK` is added by the
/// `vhost` crate, which implements it).
pub const PROTOCOL_FEATURES: VhostUserProtocolFeatures = VhostUserProtocolFeatures::MQ
    .union(VhostUserProtocolFeatures::REPLY_ACK)
    .union(VhostUserProtocolFeatures::CONFIG)
    .union(VhostUserProtocolFeatures::RESET_DEVICE);

/// Epoll token of the worker's wake-up eventfd.
pub(crate) const TOKEN_WAKE: u64 = 0;
/// Epoll token of the backend's fd.
pub(crate) const TOKEN_BACKEND: u64 = 1;
/// Epoll token of queue `i`'s kick fd: `TOKEN_KICK + i`.
pub(crate) const TOKEN_KICK: u64 = 2;

/// What the control side and the worker share outside the device lock.
#[derive(Debug)]
pub(crate) struct WorkerCtl {
    pub epoll: Epoll,
    pub wake: EventFd,
    pub stopping: std::sync::atomic::AtomicBool,
}

impl WorkerCtl {
    pub fn new() -> std::io::Result<Self> {
        let epoll = Epoll::new()?;
        let wake = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?;
        epoll.ctl(
            ControlOperation::Add,
            wake.as_raw_fd(),
            EpollEvent::new(EventSet::IN, TOKEN_WAKE),
        )?;
        Ok(WorkerCtl {
            epoll,
            wake,
            stopping: false.into(),
        })
    }

    /// Make the worker look at the device again.
    pub fn kick_worker(&self) {
        let _ = self.wake.write(1);
    }
}

/// The frontend's user-space ring addresses (`SET_VRING_ADDR`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RingAddrs {
    desc: u64,
    avail: u64,
    used: u64,
}

/// What the frontend told us about one ring.
#[derive(Debug, Default)]
struct Vring {
    num: u16,
    addrs: Option<RingAddrs>,
    base: u16,
    kick: Option<File>,
    call: Option<File>,
    err: Option<File>,
    enabled: bool,
    /// A kick fd (or the "no fd, poll" flag) arrived since the last stop.
    started: bool,
}

/// Signals used-buffer notifications on the frontend's call eventfds.
pub(crate) struct CallNotifier<'a> {
    calls: [Option<&'a File>; NUM_QUEUES as usize],
}

fn signal(f: &File) {
    let _ = (&*f).write(&1u64.to_ne_bytes());
}

impl Notifier for CallNotifier<'_> {
    #[inline]
    fn used_buffer(&mut self, queue: u16) {
        if let Some(Some(f)) = self.calls.get(usize::from(queue)) {
            signal(f);
        }
    }

    fn config_changed(&mut self) {
        // vhost-user carries config changes on the backend request channel,
        // which is not offered; a broken queue is reported on the err fd.
        log::debug!("config change not signalled (no backend request channel)");
    }
}

/// What one pass of the worker found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Step {
    /// TX work is left (budget ran out).
    pub tx_more: bool,
    /// RX work is left, or frames wait without an fd event.
    pub rx_more: bool,
    /// The fd to wait on for backend frames (None while RX cannot take any).
    pub backend_fd: Option<RawFd>,
    /// Something needs a timed retry (buffered output, a ring without kick fd).
    pub timer: bool,
}

/// One vhost-user device: the core device, the frontend's memory and rings.
pub struct DeviceState<'p, B: HostBackend, const SLOT: usize, const COUNT: usize> {
    dev: NetDevice<'p, B, NoInterceptor, SLOT, COUNT>,
    mem: Option<GuestMemoryMap>,
    vrings: [Vring; NUM_QUEUES as usize],
    acked_features: u64,
    acked_protocol: u64,
    broken_reported: bool,
    ctl: Arc<WorkerCtl>,
}

impl<'p, B: HostBackend, const SLOT: usize, const COUNT: usize> DeviceState<'p, B, SLOT, COUNT> {
    pub(crate) fn new(
        config: NetConfig,
        backend: B,
        rx_pool: &'p FramePool<SLOT, COUNT>,
        tx_pool: &'p FramePool<SLOT, COUNT>,
        poll: bool,
        ctl: Arc<WorkerCtl>,
    ) -> Self {
        let mut dev = NetDevice::new(config, backend, NoInterceptor, rx_pool, tx_pool);
        // No queue exists yet, so no memory is touched.
        dev.set_polling(poll, &RegionMemory::<1>::new());
        DeviceState {
            dev,
            mem: None,
            vrings: Default::default(),
            acked_features: 0,
            acked_protocol: 0,
            broken_reported: false,
            ctl,
        }
    }

    /// The core device.
    pub fn device(&self) -> &NetDevice<'p, B, NoInterceptor, SLOT, COUNT> {
        &self.dev
    }

    /// The device's counters.
    pub fn stats(&self) -> NetStats {
        *self.dev.stats()
    }

    /// Whether queue `i` is running.
    pub fn queue_running(&self, i: u16) -> bool {
        self.dev.queue(i).is_some()
    }

    /// Whether the frontend's memory is mapped.
    pub fn has_memory(&self) -> bool {
        self.mem.is_some()
    }

    /// The virtio features offered to the frontend (with
    /// `VHOST_USER_F_PROTOCOL_FEATURES`).
    pub fn offered_features(&self) -> u64 {
        self.dev.offered_features().bits() | PROTOCOL_FEATURES_BIT
    }

    /// The protocol features the frontend acknowledged.
    pub fn acked_protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::from_bits_retain(self.acked_protocol)
    }

    /// The virtio features the frontend acknowledged (with bit 30 if it
    /// acknowledged protocol features).
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    fn protocol_negotiated(&self) -> bool {
        self.acked_features & PROTOCOL_FEATURES_BIT != 0
    }

    fn vring(&mut self, index: u32) -> VuResult<&mut Vring> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.vrings.get_mut(i))
            .ok_or(VuError::InvalidParam)
    }

    fn set_fd(&mut self, index: u8, fd: Option<File>, which: FdKind) -> VuResult<()> {
        let ctl = Arc::clone(&self.ctl);
        let v = self.vring(u32::from(index))?;
        let slot = match which {
            FdKind::Kick => &mut v.kick,
            FdKind::Call => &mut v.call,
            FdKind::Err => &mut v.err,
        };
        if which == FdKind::Kick {
            if let Some(old) = slot.as_ref() {
                let _ = ctl.epoll.ctl(
                    ControlOperation::Delete,
                    old.as_raw_fd(),
                    EpollEvent::default(),
                );
            }
            if let Some(new) = fd.as_ref() {
                ctl.epoll
                    .ctl(
                        ControlOperation::Add,
                        new.as_raw_fd(),
                        EpollEvent::new(EventSet::IN, TOKEN_KICK + u64::from(index)),
                    )
                    .map_err(VuError::ReqHandlerError)?;
            }
        }
        *slot = fd;
        Ok(())
    }

    /// Translate the ring addresses of queue `i` through the memory table.
    fn layout(&self, i: usize) -> VuResult<Option<QueueLayout>> {
        let (Some(v), Some(mem)) = (self.vrings.get(i), self.mem.as_ref()) else {
            return Ok(None);
        };
        let Some(a) = v.addrs else {
            return Ok(None);
        };
        let t = |user: u64, what: &str| {
            mem.user_to_gpa(user).ok_or_else(|| {
                log::warn!("queue {i}: {what} address {user:#x} is outside the memory table");
                VuError::InvalidParam
            })
        };
        Ok(Some(QueueLayout {
            size: v.num,
            desc_table: t(a.desc, "descriptor table")?,
            avail_ring: t(a.avail, "available ring")?,
            used_ring: t(a.used, "used ring")?,
        }))
    }

    /// Start ring `i` if everything it needs is there.
    fn try_start(&mut self, i: usize) -> VuResult<()> {
        let idx = i as u16;
        let Some(v) = self.vrings.get(i) else {
            return Err(VuError::InvalidParam);
        };
        let enabled = v.enabled || !self.protocol_negotiated();
        if !v.started || !enabled || v.num == 0 || self.dev.queue(idx).is_some() {
            return Ok(());
        }
        let base = v.base;
        let Some(layout) = self.layout(i)? else {
            return Ok(());
        };
        let Some(mem) = self.mem.as_ref() else {
            return Ok(());
        };
        // Two queues sharing ring memory would let one queue's used writes
        // rewrite the other's descriptors (I-HOST-11, as on virtio-mmio).
        if let Some(other) = self.dev.overlapping_queue(idx, &layout) {
            log::warn!("queue {i}: refused: its rings overlap queue {other}'s");
            return Err(VuError::InvalidParam);
        }
        let q = self.dev.activate_queue(idx, layout, mem).map_err(|e| {
            log::warn!("queue {i}: refused: {e}");
            VuError::InvalidParam
        })?;
        q.set_indices(base, base);
        if let Err(e) = q.sync_used_from_ring(mem) {
            log::warn!("queue {i}: used index unreadable ({e:?}); starting from base {base}");
        }
        let used = q.next_used();
        self.dev.set_active(true);
        log::info!(
            "queue {i} started: size {}, next_avail {base}, next_used {used}",
            layout.size
        );
        self.ctl.kick_worker();
        Ok(())
    }

    /// Stop ring `i`; returns its next_avail.
    fn stop(&mut self, i: usize) -> u16 {
        let idx = i as u16;
        let mut base = self.vrings.get(i).map_or(0, |v| v.base);
        if let Some(q) = self.dev.deactivate_queue(idx) {
            base = q.next_avail();
            log::info!("queue {i} stopped at next_avail {base}");
        }
        if let Some(v) = self.vrings.get_mut(i) {
            v.base = base;
        }
        if (0..NUM_QUEUES).all(|q| self.dev.queue(q).is_none()) {
            self.dev.set_active(false);
            if self.dev.needs_reset() {
                // A queue broke; the frontend stopped every ring, so start
                // clean with the same features.
                let f = self.dev.negotiated_features();
                self.dev.reset();
                let _ = self.dev.set_features(f);
                self.broken_reported = false;
                log::info!("device reset after a broken queue");
            }
        }
        base
    }

    /// Forget the connection: stop the rings, reset the device, unmap the
    /// memory, close every fd the frontend sent (I-HOST-3).
    pub(crate) fn disconnect(&mut self) {
        for i in 0..NUM_QUEUES as usize {
            self.stop(i);
            for kind in [FdKind::Kick, FdKind::Call, FdKind::Err] {
                let _ = self.set_fd(i as u8, None, kind);
            }
        }
        self.vrings = Default::default();
        self.dev.reset();
        self.dev.backend_mut().reset();
        self.mem = None;
        self.acked_features = 0;
        self.acked_protocol = 0;
        self.broken_reported = false;
    }

    /// `SET_VRING_ENABLE` that arrived before `SET_FEATURES` (see the
    /// server): only the flag is recorded; the ring starts later.
    pub(crate) fn early_vring_enable(&mut self, index: u32, num: u32) -> VuResult<()> {
        let enable = match num {
            0 => false,
            1 => true,
            _ => return Err(VuError::InvalidParam),
        };
        let v = self.vring(index)?;
        v.enabled = enable;
        if !enable {
            self.stop(index as usize);
        }
        Ok(())
    }

    /// Read the kick eventfds that fired (the worker saw their tokens).
    pub(crate) fn drain_kicks(&mut self, fired: [bool; NUM_QUEUES as usize]) {
        let mut buf = [0u8; 8];
        for (v, f) in self.vrings.iter().zip(fired) {
            if let (true, Some(k)) = (f, v.kick.as_ref()) {
                let _ = (&*k).read(&mut buf);
            }
        }
    }

    /// One pass of the data path: TX then RX, `budget` chains each.
    pub(crate) fn process(&mut self, budget: usize, do_tx: bool, do_rx: bool) -> Step {
        let mut step = Step::default();
        let Some(mem) = self.mem.as_ref() else {
            return step;
        };
        if !self.dev.is_active() {
            return step;
        }
        let mut n = CallNotifier {
            calls: [self.vrings[0].call.as_ref(), self.vrings[1].call.as_ref()],
        };
        if self.dev.backend().tx_pending() {
            self.dev.backend_mut().flush();
        }
        if do_tx {
            step.tx_more = self.dev.process_tx(mem, &mut n, budget).more;
        }
        // Loopback (or buffered stream) frames the TX pass just queued
        // need no event to be picked up.
        if do_rx || self.dev.backend().rx_ready() {
            step.rx_more = self.dev.process_rx(mem, &mut n, budget).more;
        }
        let rx_running = self.dev.queue(0).is_some();
        let rx_can_take = rx_running && !self.dev.rx_pending() && !self.dev.needs_reset();
        let backend = self.dev.backend();
        step.rx_more |= rx_can_take && backend.rx_ready();
        step.backend_fd = if rx_can_take { backend.rx_fd() } else { None };
        step.timer = backend.tx_pending()
            || self
                .vrings
                .iter()
                .enumerate()
                .any(|(i, v)| v.kick.is_none() && self.dev.queue(i as u16).is_some());
        if self.dev.needs_reset() && !self.broken_reported {
            self.broken_reported = true;
            log::warn!("a queue broke: device needs reset; signalling the err eventfds");
            for v in &self.vrings {
                if let Some(e) = v.err.as_ref() {
                    signal(e);
                }
            }
        }
        step
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FdKind {
    Kick,
    Call,
    Err,
}

fn unsupported<T>(what: &'static str) -> VuResult<T> {
    log::warn!("unsupported request: {what}");
    Err(VuError::InvalidOperation(what))
}

impl<B: HostBackend, const SLOT: usize, const COUNT: usize> VhostUserBackendReqHandlerMut
    for DeviceState<'_, B, SLOT, COUNT>
{
    fn set_owner(&mut self) -> VuResult<()> {
        Ok(())
    }

    fn reset_owner(&mut self) -> VuResult<()> {
        self.reset_device()
    }

    fn reset_device(&mut self) -> VuResult<()> {
        for i in 0..NUM_QUEUES as usize {
            self.stop(i);
            if let Some(v) = self.vrings.get_mut(i) {
                v.started = false;
                v.enabled = false;
                v.base = 0;
            }
        }
        self.dev.reset();
        self.dev.backend_mut().reset();
        self.broken_reported = false;
        log::info!("device reset by the frontend");
        Ok(())
    }

    fn get_features(&mut self) -> VuResult<u64> {
        Ok(self.offered_features())
    }

    fn set_features(&mut self, features: u64) -> VuResult<()> {
        let asked = Features::from_bits_retain(features & !PROTOCOL_FEATURES_BIT);
        // vhost-user has no FEATURES_OK step in which the device could refuse
        // a set, and Linux acks e.g. GUEST_TSO4 without GUEST_CSUM under
        // QEMU's `guest_csum=off`: treat such orphans as not negotiated
        // (I-HOST-6); a frame that uses them anyway fails header validation.
        let virtio = virtnet::device::without_orphans(asked);
        if virtio != asked {
            log::warn!(
                "frontend acked {:?} without their prerequisites (§5.1.3.1); treated as not negotiated",
                asked.difference(virtio)
            );
        }
        self.dev.set_features(virtio).map_err(|e| {
            log::warn!("features {features:#x} refused: {e}");
            VuError::InvalidParam
        })?;
        self.acked_features = features;
        log::info!(
            "features negotiated: {:?}{}",
            virtio,
            if features & PROTOCOL_FEATURES_BIT != 0 {
                " + VHOST_USER_F_PROTOCOL_FEATURES"
            } else {
                ""
            }
        );
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy: Option<bool>,
    ) -> VuResult<Option<Vec<VhostUserMemoryRegionBase>>> {
        let table: Vec<TableEntry> = ctx
            .iter()
            .map(|r| TableEntry {
                guest_phys_addr: r.guest_phys_addr,
                memory_size: r.memory_size,
                user_addr: r.user_addr,
                mmap_offset: r.mmap_offset,
            })
            .collect();
        let map = GuestMemoryMap::map(&table, &files).map_err(|e| {
            log::warn!("memory table refused: {e}");
            VuError::InvalidParam
        })?;
        drop(files);
        // Running rings move to the new memory with their indices.
        let running: Vec<usize> = (0..NUM_QUEUES as usize)
            .filter(|&i| self.dev.queue(i as u16).is_some())
            .collect();
        for &i in &running {
            self.stop(i);
        }
        let total: u64 = table.iter().map(|e| e.memory_size).sum();
        log::info!(
            "memory table: {} region(s), {} MiB",
            table.len(),
            total >> 20
        );
        // The old mapping is unmapped here, with no ring using it and the
        // worker locked out (I-HOST-1).
        self.mem = Some(map);
        let mut r = Ok(());
        for i in 0..NUM_QUEUES as usize {
            if let Err(e) = self.try_start(i) {
                r = Err(e);
            }
        }
        r.map(|()| None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        let max = u32::from(self.dev.config().queue_size_max);
        let v = self.vring(index)?;
        if num == 0 || !num.is_power_of_two() || num > max {
            log::warn!("queue {index}: size {num} refused (a power of two up to {max})");
            return Err(VuError::InvalidParam);
        }
        v.num = num as u16;
        Ok(())
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VuResult<()> {
        let v = self.vring(index)?;
        v.addrs = Some(RingAddrs {
            desc: descriptor,
            avail: available,
            used,
        });
        // With memory known, refuse addresses outside it now.
        if let Err(e) = self.layout(index as usize) {
            if let Ok(v) = self.vring(index) {
                v.addrs = None;
            }
            return Err(e);
        }
        Ok(())
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        let v = self.vring(index)?;
        v.base = u16::try_from(base).map_err(|_| VuError::InvalidParam)?;
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        self.vring(index)?;
        let i = index as usize;
        let base = self.stop(i);
        let _ = self.set_fd(index as u8, None, FdKind::Kick);
        if let Some(v) = self.vrings.get_mut(i) {
            v.started = false;
        }
        Ok(VhostUserVringState::new(index, u32::from(base)))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.set_fd(index, fd, FdKind::Kick)?;
        if let Some(v) = self.vrings.get_mut(usize::from(index)) {
            v.started = true;
        }
        self.try_start(usize::from(index))
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.set_fd(index, fd, FdKind::Call)
    }

    fn set_vring_err(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.set_fd(index, fd, FdKind::Err)
    }

    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        Ok(PROTOCOL_FEATURES)
    }

    fn set_protocol_features(&mut self, features: u64) -> VuResult<()> {
        let f = VhostUserProtocolFeatures::from_bits_retain(features);
        if !PROTOCOL_FEATURES.contains(f) {
            log::warn!("protocol features {features:#x} were not offered");
            return Err(VuError::InvalidParam);
        }
        self.acked_protocol = features;
        log::info!("protocol features: {f:?}");
        Ok(())
    }

    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok(u64::from(NUM_QUEUES))
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        let v = self.vring(index)?;
        v.enabled = enable;
        if enable {
            self.try_start(index as usize)
        } else {
            self.stop(index as usize);
            Ok(())
        }
    }

    fn get_config(
        &mut self,
        offset: u32,
        size: u32,
        _flags: VhostUserConfigFlags,
    ) -> VuResult<Vec<u8>> {
        if size > 256 {
            return Err(VuError::InvalidParam);
        }
        let mut buf = vec![0u8; size as usize];
        self.dev.read_config(offset as usize, &mut buf);
        Ok(buf)
    }

    fn set_config(
        &mut self,
        _offset: u32,
        _buf: &[u8],
        _flags: VhostUserConfigFlags,
    ) -> VuResult<()> {
        unsupported("SET_CONFIG (config space is read-only)")
    }

    fn set_gpu_socket(&mut self, _gpu_backend: GpuBackend) -> VuResult<()> {
        unsupported("GPU_SET_SOCKET")
    }

    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> VuResult<File> {
        unsupported("GET_SHARED_OBJECT")
    }

    fn get_inflight_fd(
        &mut self,
        _inflight: &VhostUserInflight,
    ) -> VuResult<(VhostUserInflight, File)> {
        unsupported("GET_INFLIGHT_FD")
    }

    fn set_inflight_fd(&mut self, _inflight: &VhostUserInflight, _file: File) -> VuResult<()> {
        unsupported("SET_INFLIGHT_FD")
    }

    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        unsupported("GET_MAX_MEM_SLOTS")
    }

    fn add_mem_region(
        &mut self,
        _region: &VhostUserSingleMemoryRegion,
        _fd: File,
        _postcopy: Option<bool>,
    ) -> VuResult<Option<VhostUserMemoryRegionBase>> {
        unsupported("ADD_MEM_REG")
    }

    fn remove_mem_region(&mut self, _region: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        unsupported("REM_MEM_REG")
    }

    fn set_device_state_fd(
        &mut self,
        _direction: VhostTransferStateDirection,
        _phase: VhostTransferStatePhase,
        _fd: File,
    ) -> VuResult<Option<File>> {
        unsupported("SET_DEVICE_STATE_FD")
    }

    fn check_device_state(&mut self) -> VuResult<()> {
        unsupported("CHECK_DEVICE_STATE")
    }

    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        unsupported("GET_SHMEM_CONFIG")
    }

    fn set_log_base(&mut self, _log: &VhostUserLog, _file: File) -> VuResult<()> {
        unsupported("SET_LOG_BASE")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphaned_offloads_are_not_negotiated() {
        let all = Features::VERSION_1
            | Features::CSUM
            | Features::GUEST_CSUM
            | Features::HOST_TSO4
            | Features::HOST_ECN
            | Features::GUEST_TSO6
            | Features::GUEST_ECN;
        assert_eq!(virtnet::device::without_orphans(all), all);
        // QEMU with csum=off,guest_csum=off and the TSO defaults left on.
        let qemu = Features::VERSION_1
            | Features::HOST_TSO4
            | Features::HOST_TSO6
            | Features::HOST_ECN
            | Features::GUEST_TSO4
            | Features::GUEST_ECN
            | Features::MRG_RXBUF;
        assert_eq!(
            virtnet::device::without_orphans(qemu),
            Features::VERSION_1 | Features::MRG_RXBUF
        );
        assert_eq!(
            virtnet::device::without_orphans(Features::CSUM | Features::HOST_ECN),
            Features::CSUM
        );
    }
}
