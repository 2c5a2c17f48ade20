//! The device side: virtnet's `NetDevice` behind the core's virtio-mmio
//! register block (`MmioTransport`), over the guest RAM (identity-mapped
//! `RegionMemory`), with its interrupt line on a GIC SPI, and a generating
//! and checking backend.
//!
//! Two ways in, one device:
//! * **Trapped (EL2)**: when the image was started at EL2, the driver at EL1
//!   makes real loads and stores to the virtio-mmio window at
//!   [`VIRTIO_BASE`], which stage 2 leaves unmapped; `el2.rs` hands each
//!   Data Abort to [`serve_abort`], which serves it through
//!   `virtnet_baremetal::trap::serve_data_abort`. Host-side control (create
//!   the device, inject received frames, read counters) is a hypercall
//!   (`hvc #0`) handled by [`host_op`].
//! * **Direct (EL1)**: without EL2, the driver's transport calls
//!   [`mmio_read`] / [`mmio_write`] and [`host_op`] directly, inside a
//!   critical section.
//!
//! Every entry runs inside `heap::device_context`: the device never
//! allocates. Exclusive access to the device state: at EL2 the single vCPU
//! is stopped while its trap is served (EL2 runs with interrupts masked); at
//! EL1 the callers hold a critical section (DAIF masked, one core).

use core::cell::UnsafeCell;

use virtnet::device::{
    Backend, BackendError, NetConfig, NetDevice, NoInterceptor, Progress, RxFrame,
};
use virtnet::features::Features;
use virtnet::mem::RegionMemory;
use virtnet::mmio::{InterruptLine, MmioTransport};
use virtnet::pool::FramePool;
use virtnet::wire::NetHdrRepr;
use virtnet_aarch64::VcpuRegs;
use virtnet_baremetal::gic::{IrqLine, SpiController};
use virtnet_baremetal::memory::guest_memory;
use virtnet_baremetal::trap::{serve_data_abort, TrapError};

use crate::frames::{FrameGen, MAX_LEN, RX_SEED, TX_SEED};
use crate::guest;
use crate::irq::{self, Gic, VIRTIO_SPI};

/// Guest-physical address of the virtio-mmio window (QEMU `virt`'s first
/// virtio-mmio slot, left unmapped at stage 2).
pub const VIRTIO_BASE: u64 = 0x0a00_0000;
/// The MAC address the device offers.
pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// Host-control operations (`hvc #0` with the operation in x0 and its
/// argument in x1; the result comes back in x0).
pub mod op {
    /// Returns [`super::PONG`].
    pub const PING: u64 = 0;
    /// Creates a fresh device (dropping any previous one). Argument bits:
    /// [`super::CREATE_EVENT_IDX`], [`super::CREATE_SINK`]. Returns 0, or 1
    /// if the guest memory cannot be built.
    pub const CREATE: u64 = 1;
    /// Gives the backend `arg` more frames to deliver and polls the device
    /// until it has nothing more to do. Returns the frames delivered.
    pub const INJECT: u64 = 2;
    /// Returns counter `arg` (a [`super::Stat`]), or `u64::MAX` without a
    /// device.
    pub const STAT: u64 = 3;
    /// Drops the device.
    pub const DESTROY: u64 = 4;
}

/// [`op::PING`]'s answer.
pub const PONG: u64 = 0x0076_6972_746e_6574; // "virtnet"
/// [`op::CREATE`] flag: offer VIRTIO_F_RING_EVENT_IDX.
pub const CREATE_EVENT_IDX: u64 = 1;
/// [`op::CREATE`] flag: the backend accepts any TX frame without comparing
/// it to the generated sequence (hostile tests).
pub const CREATE_SINK: u64 = 2;

/// Counters readable with [`op::STAT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Stat {
    /// `NetStats::tx_packets`.
    TxPackets,
    /// `NetStats::rx_packets`.
    RxPackets,
    /// `NetStats::tx_dropped()`.
    TxDropped,
    /// `NetStats::rx_dropped()`.
    RxDropped,
    /// `NetStats::queue_errors`.
    QueueErrors,
    /// `NetStats::tx_malformed_chains`.
    TxMalformedChains,
    /// `NetStats::rx_malformed_chains`.
    RxMalformedChains,
    /// `NetStats::notifications` (used-buffer notifications sent).
    Notifications,
    /// Frames the backend received from the driver.
    BackendTx,
    /// TX frames that differed from the generated sequence.
    TxMismatches,
    /// Sequence number + 1 of the first differing TX frame (0: none).
    FirstBadTx,
    /// Times the device raised its interrupt line.
    Raised,
    /// Raises that found the SPI already pending (coalesced by the GIC).
    Coalesced,
    /// The negotiated feature bits.
    Negotiated,
    /// Whether the device needs a reset (0 or 1).
    NeedsReset,
    /// Frames the backend still has to deliver.
    RxCredit,
    /// Free slots in both frame pools minus their capacity (0 when none
    /// leaked).
    PoolDeficit,
}

/// The backend: checks every TX frame against the TX sequence, and
/// delivers RX frames of the RX sequence when given credit.
pub struct GenBackend {
    sink: bool,
    tx: FrameGen,
    tx_frames: u64,
    tx_mismatches: u64,
    first_bad_tx: u64,
    rx: FrameGen,
    rx_credit: u64,
    expect: [u8; MAX_LEN],
}

impl Backend for GenBackend {
    fn transmit(&mut self, hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        self.tx_frames += 1;
        if self.sink {
            return Ok(());
        }
        let len = self.tx.next_into(&mut self.expect);
        if *hdr != NetHdrRepr::default() || frame != &self.expect[..len] {
            self.tx_mismatches += 1;
            if self.first_bad_tx == 0 {
                self.first_bad_tx = self.tx.count();
            }
        }
        Ok(())
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        if self.rx_credit == 0 {
            return Ok(None);
        }
        if buf.len() < MAX_LEN {
            // Never with the default pool slots (1536 bytes); refusing before
            // generating keeps the sequence in step.
            return Err(BackendError::Refused);
        }
        let len = self.rx.next_into(&mut self.expect);
        let Some(dst) = buf.get_mut(..len) else {
            return Err(BackendError::Refused);
        };
        dst.copy_from_slice(&self.expect[..len]);
        self.rx_credit -= 1;
        Ok(Some(RxFrame {
            len,
            hdr: NetHdrRepr::default(),
        }))
    }
}

/// The device's interrupt line: the library's `IrqLine` on the image's GIC,
/// counting raises and raises that found the SPI still pending.
pub struct Line {
    irq: IrqLine<Gic>,
    raised: u64,
    coalesced: u64,
}

impl InterruptLine for Line {
    fn raise(&mut self) {
        self.raised += 1;
        if self.irq.gic().is_pending(self.irq.spi()) {
            self.coalesced += 1;
        }
        InterruptLine::raise(&mut self.irq);
    }
}

type Dev = NetDevice<'static, GenBackend, NoInterceptor>;

static RX_POOL: FramePool = FramePool::new();
static TX_POOL: FramePool = FramePool::new();

struct Hyp {
    transport: MmioTransport<Dev>,
    mem: RegionMemory<1>,
    line: Line,
}

struct Slot(UnsafeCell<Option<Hyp>>);

// SAFETY: only `with_hyp` touches the slot, and its callers are exclusive
// (see the module docs: EL2 handler with the vCPU stopped, or a critical
// section on the single core).
unsafe impl Sync for Slot {}

static HYP: Slot = Slot(UnsafeCell::new(None));

/// Runs `f` on the device state.
///
/// Callers guarantee exclusivity: the EL2 exception handler, or code holding
/// a critical section at EL1; never both at once (EL1 code is stopped while
/// EL2 runs, and EL2 never calls into EL1).
fn with_slot<R>(f: impl FnOnce(&mut Option<Hyp>) -> R) -> R {
    // SAFETY: exclusive by the callers' contract above, so this is the only
    // reference to the slot while `f` runs.
    f(unsafe { &mut *HYP.0.get() })
}

/// Performs host-control operation `op` with `arg` (see [`op`]).
pub fn host_op(op: u64, arg: u64) -> u64 {
    with_slot(|slot| match op {
        op::PING => PONG,
        op::CREATE => {
            *slot = None;
            match create(arg) {
                Some(h) => {
                    *slot = Some(h);
                    0
                }
                None => 1,
            }
        }
        op::INJECT => slot.as_mut().map_or(0, |h| inject(h, arg)),
        op::STAT => slot.as_ref().map_or(u64::MAX, |h| stat(h, arg)),
        op::DESTROY => {
            *slot = None;
            0
        }
        _ => u64::MAX,
    })
}

fn create(flags: u64) -> Option<Hyp> {
    let gic = irq::gic()?;
    let mut offer = NetConfig::default().offer;
    offer.set(Features::RING_EVENT_IDX, flags & CREATE_EVENT_IDX != 0);
    let cfg = NetConfig {
        mac: Some(MAC),
        offer,
        ..NetConfig::default()
    };
    let backend = GenBackend {
        sink: flags & CREATE_SINK != 0,
        tx: FrameGen::new(TX_SEED),
        tx_frames: 0,
        tx_mismatches: 0,
        first_bad_tx: 0,
        rx: FrameGen::new(RX_SEED),
        rx_credit: 0,
        expect: [0; MAX_LEN],
    };
    // SAFETY: the guest RAM is a static (never unmapped or reused), which
    // the image only accesses through raw pointers (guest.rs); MMU off, so
    // its address is its physical address at EL1 and at EL2.
    let mem = unsafe { guest_memory::<1>(&[guest::range()]) }.ok()?;
    Some(Hyp {
        transport: MmioTransport::new(NetDevice::new(
            cfg,
            backend,
            NoInterceptor,
            &RX_POOL,
            &TX_POOL,
        )),
        mem,
        line: Line {
            irq: IrqLine::new(gic, VIRTIO_SPI),
            raised: 0,
            coalesced: 0,
        },
    })
}

fn inject(h: &mut Hyp, frames: u64) -> u64 {
    let before = h.transport.device().stats().rx_packets;
    h.transport.device_mut().backend_mut().rx_credit += frames;
    // Bounded: each round handles up to the transport's budget.
    for _ in 0..1024 {
        if !h.transport.poll(&h.mem, &mut h.line).more {
            break;
        }
    }
    h.transport.device().stats().rx_packets - before
}

fn stat(h: &Hyp, which: u64) -> u64 {
    let dev = h.transport.device();
    let s = dev.stats();
    let b = dev.backend();
    let table: [(Stat, u64); 17] = [
        (Stat::TxPackets, s.tx_packets),
        (Stat::RxPackets, s.rx_packets),
        (Stat::TxDropped, s.tx_dropped()),
        (Stat::RxDropped, s.rx_dropped()),
        (Stat::QueueErrors, s.queue_errors),
        (Stat::TxMalformedChains, s.tx_malformed_chains),
        (Stat::RxMalformedChains, s.rx_malformed_chains),
        (Stat::Notifications, s.notifications),
        (Stat::BackendTx, b.tx_frames),
        (Stat::TxMismatches, b.tx_mismatches),
        (Stat::FirstBadTx, b.first_bad_tx),
        (Stat::Raised, h.line.raised),
        (Stat::Coalesced, h.line.coalesced),
        (Stat::Negotiated, dev.negotiated_features().bits()),
        (Stat::NeedsReset, u64::from(dev.needs_reset())),
        (Stat::RxCredit, b.rx_credit),
        (Stat::PoolDeficit, {
            // Slots neither free nor held by the device (I-POOL-5).
            let (rx_held, tx_held) = dev.pool_slots_held();
            (RX_POOL.capacity() + TX_POOL.capacity())
                .wrapping_sub(RX_POOL.available() + TX_POOL.available() + rx_held + tx_held)
                as u64
        }),
    ];
    table
        .iter()
        .find(|(k, _)| *k as u64 == which)
        .map_or(u64::MAX, |(_, v)| *v)
}

/// A register load of `size` bytes at `offset` in the window (direct path).
/// Reads as all ones without a device, like an empty bus.
pub fn mmio_read(offset: u64, size: usize) -> u64 {
    with_slot(|slot| {
        slot.as_ref()
            .map_or(u64::MAX, |h| h.transport.read(offset, size))
    })
}

/// A register store (direct path). Ignored without a device.
pub fn mmio_write(offset: u64, size: usize, value: u64) -> Progress {
    with_slot(|slot| {
        slot.as_mut().map_or(Progress::default(), |h| {
            h.transport.write(offset, size, value, &h.mem, &mut h.line)
        })
    })
}

/// Serves a trapped guest access to the window (EL2 path) through the
/// library's `serve_data_abort`. Returns the PC step.
///
/// # Errors
/// The library's refusal (no valid syndrome, outside the window), or
/// `OutsideWindow` when there is no device.
pub fn serve_abort<R: VcpuRegs + ?Sized>(
    esr: u64,
    ipa: u64,
    regs: &mut R,
) -> Result<u64, TrapError> {
    with_slot(|slot| {
        let Some(h) = slot.as_mut() else {
            return Err(TrapError::OutsideWindow { ipa, size: 0 });
        };
        let served = serve_data_abort(
            VIRTIO_BASE,
            esr,
            ipa,
            regs,
            &mut h.transport,
            &h.mem,
            &mut h.line,
        )?;
        // A QueueNotify that ran out of budget: finish the work now (a real
        // hypervisor would schedule it).
        if served.progress.more {
            for _ in 0..1024 {
                if !h.transport.poll(&h.mem, &mut h.line).more {
                    break;
                }
            }
        }
        Ok(served.pc_step)
    })
}
