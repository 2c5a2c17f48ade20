//! The virtio-mmio transport, device side (VIRTIO 1.2 §4.2.2, version 2).
//!
//! [`MmioTransport`] is a register block: the embedder forwards every trapped
//! guest load and store inside the device's MMIO window to
//! [`MmioTransport::read`] / [`MmioTransport::write`] (bare metal: from the
//! data-abort handler; HVF: from the vCPU exit; tests: from a driver's
//! transport). Legacy (version 1) is not offered.
//!
//! Rules it enforces (specs/07-net-device.md, I-MMIO-1 .. I-MMIO-6):
//! - QueueSel out of range: per-queue registers read 0, writes are ignored.
//! - Queue registers change only while the queue is not ready, after
//!   FEATURES_OK and before DRIVER_OK; QueueReady=1 validates the layout.
//! - Status bits are only added, except by writing 0 (reset); FEATURES_OK
//!   stays clear for an invalid feature set; DRIVER_OK needs FEATURES_OK.
//! - Nothing is consumed and no interrupt sent before DRIVER_OK; after a
//!   reset nothing touches guest memory.

use crate::device::{
    ActivateError, Backend, FeatureError, Interceptor, NetDevice, Notifier, Progress, DEVICE_ID,
    NUM_QUEUES,
};
use crate::features::Features;
use crate::mem::{GuestAddress, GuestMemory};
use crate::queue::QueueLayout;

/// `MagicValue`: "virt".
pub const MAGIC: u32 = 0x7472_6976;
/// The transport version offered (modern).
pub const VERSION: u32 = 2;
/// `VendorID` reported ("VNET").
pub const VENDOR_ID: u32 = 0x5445_4E56;
/// Default work budget per QueueNotify.
pub const DEFAULT_BUDGET: usize = 256;

/// Register offsets (§4.2.2, table "MMIO Device Register Layout").
#[allow(missing_docs)]
pub mod regs {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_SEL: u64 = 0x0ac;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// Size of the MMIO window the embedder should map (registers + config).
pub const WINDOW_SIZE: u64 = 0x200;

bitflags::bitflags! {
    /// Device status bits (§2.1).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct DeviceStatus: u8 {
        /// The guest found the device.
        const ACKNOWLEDGE = 1;
        /// The guest has a driver for it.
        const DRIVER = 2;
        /// The driver is ready.
        const DRIVER_OK = 4;
        /// Feature negotiation is complete.
        const FEATURES_OK = 8;
        /// The device hit an error and needs a reset.
        const DEVICE_NEEDS_RESET = 64;
        /// The driver gave up.
        const FAILED = 128;
    }
}

/// `InterruptStatus` bit: used buffer.
pub const INT_VRING: u32 = 1;
/// `InterruptStatus` bit: configuration change.
pub const INT_CONFIG: u32 = 2;

/// The interrupt line of the device (a GIC SPI, an irqfd, a VMM callback).
pub trait InterruptLine {
    /// Assert the line (or send an edge).
    fn raise(&mut self);
    /// Deassert the line: InterruptStatus became 0 (level-triggered lines).
    fn lower(&mut self) {}
}

impl<L: InterruptLine + ?Sized> InterruptLine for &mut L {
    fn raise(&mut self) {
        (**self).raise()
    }
    fn lower(&mut self) {
        (**self).lower()
    }
}

/// What the mmio block needs from a device. Implemented by [`NetDevice`].
pub trait MmioDevice {
    /// virtio device ID.
    fn device_id(&self) -> u32;
    /// Offered features.
    fn offered_features(&self) -> Features;
    /// Accept the driver's features, or refuse them.
    fn set_features(&mut self, f: Features) -> Result<(), FeatureError>;
    /// Number of queues.
    fn num_queues(&self) -> u16;
    /// Maximum size of a queue.
    fn queue_max_size(&self) -> u16;
    /// Stop a queue.
    fn deactivate_queue(&mut self, index: u16);
    /// Start moving data (DRIVER_OK).
    fn set_active(&mut self, active: bool);
    /// Reset the device.
    fn reset(&mut self);
    /// Whether the device needs a reset.
    fn needs_reset(&self) -> bool;
    /// Config generation.
    fn config_generation(&self) -> u32;
    /// Read config space.
    fn read_config(&self, offset: usize, data: &mut [u8]);
}

/// The guest-memory half of [`MmioDevice`]: queue activation and kicks.
pub trait MmioQueues<M: GuestMemory + ?Sized>: MmioDevice {
    /// Validate and activate a queue.
    fn activate_queue(
        &mut self,
        index: u16,
        layout: QueueLayout,
        mem: &M,
    ) -> Result<(), ActivateError>;
    /// Handle a kick of `index`.
    fn process_queue<N: Notifier + ?Sized>(
        &mut self,
        index: u16,
        mem: &M,
        notifier: &mut N,
        budget: usize,
    ) -> Progress;
}

impl<B: Backend, I: Interceptor, const SLOT: usize, const COUNT: usize> MmioDevice
    for NetDevice<'_, B, I, SLOT, COUNT>
{
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }
    fn offered_features(&self) -> Features {
        NetDevice::offered_features(self)
    }
    fn set_features(&mut self, f: Features) -> Result<(), FeatureError> {
        NetDevice::set_features(self, f)
    }
    fn num_queues(&self) -> u16 {
        NUM_QUEUES
    }
    fn queue_max_size(&self) -> u16 {
        self.config().queue_size_max
    }
    fn deactivate_queue(&mut self, index: u16) {
        NetDevice::deactivate_queue(self, index);
    }
    fn set_active(&mut self, active: bool) {
        NetDevice::set_active(self, active)
    }
    fn reset(&mut self) {
        NetDevice::reset(self)
    }
    fn needs_reset(&self) -> bool {
        NetDevice::needs_reset(self)
    }
    fn config_generation(&self) -> u32 {
        NetDevice::config_generation(self)
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        NetDevice::read_config(self, offset, data)
    }
}

impl<
        M: GuestMemory + ?Sized,
        B: Backend,
        I: Interceptor,
        const SLOT: usize,
        const COUNT: usize,
    > MmioQueues<M> for NetDevice<'_, B, I, SLOT, COUNT>
{
    fn activate_queue(
        &mut self,
        index: u16,
        layout: QueueLayout,
        mem: &M,
    ) -> Result<(), ActivateError> {
        // Two queues sharing ring memory would each overwrite the other's
        // used ring: refuse it (a driver never does this; I-NET-11).
        if let Some(other) = self.overlapping_queue(index, &layout) {
            return Err(ActivateError::OverlapsQueue(other));
        }
        NetDevice::activate_queue(self, index, layout, mem).map(|_| ())
    }
    fn process_queue<N: Notifier + ?Sized>(
        &mut self,
        index: u16,
        mem: &M,
        notifier: &mut N,
        budget: usize,
    ) -> Progress {
        NetDevice::process_queue(self, index, mem, notifier, budget)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct QueueRegs {
    num: u16,
    ready: bool,
    desc: u64,
    driver: u64,
    device: u64,
}

const MAX_QUEUES: usize = 8;

/// Sets InterruptStatus bits and raises the line.
struct MmioNotifier<'a, L: InterruptLine + ?Sized> {
    status: &'a mut u32,
    line: &'a mut L,
}

impl<L: InterruptLine + ?Sized> Notifier for MmioNotifier<'_, L> {
    fn used_buffer(&mut self, _queue: u16) {
        *self.status |= INT_VRING;
        self.line.raise();
    }
    fn config_changed(&mut self) {
        *self.status |= INT_CONFIG;
        self.line.raise();
    }
}

/// The virtio-mmio register block of one device.
pub struct MmioTransport<D> {
    device: D,
    status: DeviceStatus,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: [QueueRegs; MAX_QUEUES],
    interrupt_status: u32,
    budget: usize,
}

fn set_half(v: &mut u64, high: bool, value: u32) {
    if high {
        *v = (*v & 0xffff_ffff) | (u64::from(value) << 32);
    } else {
        *v = (*v & !0xffff_ffff) | u64::from(value);
    }
}

impl<D: MmioDevice> MmioTransport<D> {
    /// Wrap a device in a register block.
    pub fn new(device: D) -> Self {
        MmioTransport {
            device,
            status: DeviceStatus::empty(),
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues: [QueueRegs::default(); MAX_QUEUES],
            interrupt_status: 0,
            budget: DEFAULT_BUDGET,
        }
    }

    /// Chains or frames handled per queue per notification.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget.max(1);
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably (link changes, stats).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The status register as the driver reads it.
    pub fn status(&self) -> DeviceStatus {
        let mut s = self.status;
        if self.device.needs_reset() {
            s |= DeviceStatus::DEVICE_NEEDS_RESET;
        }
        s
    }

    /// Pending interrupt causes.
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    fn running(&self) -> bool {
        self.status.contains(DeviceStatus::DRIVER_OK) && !self.device.needs_reset()
    }

    fn selected(&self) -> Option<usize> {
        let sel = usize::try_from(self.queue_sel).ok()?;
        (sel < usize::from(self.device.num_queues()) && sel < MAX_QUEUES).then_some(sel)
    }

    /// The selected queue's registers if the driver may change them now.
    fn writable_queue(&mut self) -> Option<&mut QueueRegs> {
        let sel = self.selected()?;
        let window = self.status.contains(DeviceStatus::FEATURES_OK)
            && !self.status.contains(DeviceStatus::DRIVER_OK);
        let q = self.queues.get_mut(sel)?;
        (window && !q.ready).then_some(q)
    }

    /// A guest load of `size` bytes (1, 2, 4 or 8) at `offset` in the window.
    /// Registers are 32-bit: other sizes read 0. Config space takes any size.
    pub fn read(&self, offset: u64, size: usize) -> u64 {
        if offset >= regs::CONFIG {
            let mut buf = [0u8; 8];
            let Some(dst) = buf.get_mut(..size.min(8)) else {
                return 0;
            };
            let off = usize::try_from(offset.saturating_sub(regs::CONFIG)).unwrap_or(usize::MAX);
            self.device.read_config(off, dst);
            return u64::from_le_bytes(buf);
        }
        if size != 4 {
            return 0;
        }
        let q = self.selected().and_then(|s| self.queues.get(s));
        let v: u32 = match offset {
            regs::MAGIC_VALUE => MAGIC,
            regs::VERSION => VERSION,
            regs::DEVICE_ID => self.device.device_id(),
            regs::VENDOR_ID => VENDOR_ID,
            regs::DEVICE_FEATURES => {
                let f = self.device.offered_features().bits();
                match self.device_features_sel {
                    0 => f as u32,
                    1 => (f >> 32) as u32,
                    _ => 0,
                }
            }
            regs::QUEUE_NUM_MAX => q.map_or(0, |_| u32::from(self.device.queue_max_size())),
            regs::QUEUE_NUM => q.map_or(0, |q| u32::from(q.num)),
            regs::QUEUE_READY => q.map_or(0, |q| u32::from(q.ready)),
            regs::QUEUE_DESC_LOW => q.map_or(0, |q| q.desc as u32),
            regs::QUEUE_DESC_HIGH => q.map_or(0, |q| (q.desc >> 32) as u32),
            regs::QUEUE_DRIVER_LOW => q.map_or(0, |q| q.driver as u32),
            regs::QUEUE_DRIVER_HIGH => q.map_or(0, |q| (q.driver >> 32) as u32),
            regs::QUEUE_DEVICE_LOW => q.map_or(0, |q| q.device as u32),
            regs::QUEUE_DEVICE_HIGH => q.map_or(0, |q| (q.device >> 32) as u32),
            regs::INTERRUPT_STATUS => self.interrupt_status,
            regs::STATUS => u32::from(self.status().bits()),
            // No shared-memory regions: length reads as -1 (§4.2.2).
            regs::SHM_LEN_LOW | regs::SHM_LEN_HIGH => u32::MAX,
            regs::SHM_BASE_LOW | regs::SHM_BASE_HIGH => u32::MAX,
            regs::CONFIG_GENERATION => self.device.config_generation(),
            _ => 0,
        };
        u64::from(v)
    }

    /// A guest store of `size` bytes at `offset`. Returns what a
    /// QueueNotify processed (`more` = call [`MmioTransport::poll`] again).
    pub fn write<M: GuestMemory + ?Sized, L: InterruptLine + ?Sized>(
        &mut self,
        offset: u64,
        size: usize,
        value: u64,
        mem: &M,
        line: &mut L,
    ) -> Progress
    where
        D: MmioQueues<M>,
    {
        if offset >= regs::CONFIG || size != 4 {
            // virtio-net config space is read-only for the driver.
            return Progress::default();
        }
        let v = value as u32;
        match offset {
            regs::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            regs::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            regs::DRIVER_FEATURES => {
                let s = self.status;
                if s.contains(DeviceStatus::DRIVER) && !s.contains(DeviceStatus::FEATURES_OK) {
                    match self.driver_features_sel {
                        0 => set_half(&mut self.driver_features, false, v),
                        1 => set_half(&mut self.driver_features, true, v),
                        _ => {}
                    }
                }
            }
            regs::QUEUE_SEL => self.queue_sel = v,
            regs::QUEUE_NUM => {
                if let Some(q) = self.writable_queue() {
                    q.num = u16::try_from(v).unwrap_or(0);
                }
            }
            regs::QUEUE_DESC_LOW | regs::QUEUE_DESC_HIGH => {
                if let Some(q) = self.writable_queue() {
                    set_half(&mut q.desc, offset == regs::QUEUE_DESC_HIGH, v);
                }
            }
            regs::QUEUE_DRIVER_LOW | regs::QUEUE_DRIVER_HIGH => {
                if let Some(q) = self.writable_queue() {
                    set_half(&mut q.driver, offset == regs::QUEUE_DRIVER_HIGH, v);
                }
            }
            regs::QUEUE_DEVICE_LOW | regs::QUEUE_DEVICE_HIGH => {
                if let Some(q) = self.writable_queue() {
                    set_half(&mut q.device, offset == regs::QUEUE_DEVICE_HIGH, v);
                }
            }
            regs::QUEUE_READY => self.write_queue_ready(v, mem, line),
            regs::QUEUE_NOTIFY => {
                let index = (v & 0xffff) as u16;
                if self.running() {
                    let budget = self.budget;
                    let mut n = MmioNotifier {
                        status: &mut self.interrupt_status,
                        line,
                    };
                    return self.device.process_queue(index, mem, &mut n, budget);
                }
            }
            regs::INTERRUPT_ACK => {
                self.interrupt_status &= !v;
                if self.interrupt_status == 0 {
                    line.lower();
                }
            }
            regs::STATUS => self.write_status(v, line),
            _ => {}
        }
        Progress::default()
    }

    fn write_queue_ready<M: GuestMemory + ?Sized, L: InterruptLine + ?Sized>(
        &mut self,
        v: u32,
        mem: &M,
        line: &mut L,
    ) where
        D: MmioQueues<M>,
    {
        let Some(sel) = self.selected() else {
            return;
        };
        if v == 0 {
            if let Some(q) = self.queues.get_mut(sel) {
                q.ready = false;
            }
            self.device.deactivate_queue(sel as u16);
            return;
        }
        let Some(q) = self.writable_queue().copied() else {
            return;
        };
        let layout = QueueLayout {
            size: q.num,
            desc_table: GuestAddress(q.desc),
            avail_ring: GuestAddress(q.driver),
            used_ring: GuestAddress(q.device),
        };
        match self.device.activate_queue(sel as u16, layout, mem) {
            Ok(()) => {
                if let Some(q) = self.queues.get_mut(sel) {
                    q.ready = true;
                }
            }
            Err(_e) => {
                vn_warn!("virtio-mmio: queue {} refused: {:?}", sel, _e);
                // An error state: tell the driver (§2.1.2).
                self.status |= DeviceStatus::DEVICE_NEEDS_RESET;
                self.interrupt_status |= INT_CONFIG;
                line.raise();
            }
        }
    }

    fn write_status<L: InterruptLine + ?Sized>(&mut self, v: u32, line: &mut L) {
        if v == 0 {
            self.reset(line);
            return;
        }
        let old = self.status;
        let mut new = DeviceStatus::from_bits_truncate(v as u8);
        new.remove(DeviceStatus::DEVICE_NEEDS_RESET);
        let keep_nr = old & DeviceStatus::DEVICE_NEEDS_RESET;
        if !old
            .difference(DeviceStatus::DEVICE_NEEDS_RESET)
            .difference(new)
            .is_empty()
        {
            // Clearing bits other than by reset is refused (§2.1.2, case 6).
            return;
        }
        if new.contains(DeviceStatus::FEATURES_OK) && !old.contains(DeviceStatus::FEATURES_OK) {
            let ok = new.contains(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER)
                && self
                    .device
                    .set_features(Features::from_bits_retain(self.driver_features))
                    .is_ok();
            if !ok {
                new.remove(DeviceStatus::FEATURES_OK);
            }
        }
        if new.contains(DeviceStatus::DRIVER_OK) && !old.contains(DeviceStatus::DRIVER_OK) {
            if new.contains(DeviceStatus::FEATURES_OK) {
                self.device.set_active(true);
            } else {
                new.remove(DeviceStatus::DRIVER_OK);
            }
        }
        if new.contains(DeviceStatus::FAILED) {
            self.device.set_active(false);
        }
        self.status = new | keep_nr;
    }

    fn reset<L: InterruptLine + ?Sized>(&mut self, line: &mut L) {
        self.device.reset();
        self.status = DeviceStatus::empty();
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.queues = [QueueRegs::default(); MAX_QUEUES];
        if self.interrupt_status != 0 {
            self.interrupt_status = 0;
            line.lower();
        }
    }

    /// Process both queues without a kick (the backend has frames, or a
    /// busy-poll loop): RX first, then TX. Does nothing before DRIVER_OK.
    pub fn poll<M: GuestMemory + ?Sized, L: InterruptLine + ?Sized>(
        &mut self,
        mem: &M,
        line: &mut L,
    ) -> Progress
    where
        D: MmioQueues<M>,
    {
        if !self.running() {
            return Progress::default();
        }
        let budget = self.budget;
        let mut n = MmioNotifier {
            status: &mut self.interrupt_status,
            line,
        };
        let rx = self
            .device
            .process_queue(crate::device::RX_QUEUE, mem, &mut n, budget);
        let tx = self
            .device
            .process_queue(crate::device::TX_QUEUE, mem, &mut n, budget);
        Progress {
            handled: rx.handled.saturating_add(tx.handled),
            more: rx.more || tx.more,
        }
    }

    /// Raise a configuration-change interrupt (after a link change through
    /// [`MmioTransport::device_mut`]).
    pub fn notify_config<L: InterruptLine + ?Sized>(&mut self, line: &mut L) {
        if self.running() {
            self.interrupt_status |= INT_CONFIG;
            line.raise();
        }
    }
}

#[cfg(test)]
mod tests;
