//! Arm Generic Interrupt Controller (GICv2 and GICv3) drivers: just enough to
//! route a shared peripheral interrupt (SPI) to a CPU, raise it in software,
//! and acknowledge and complete it.
//!
//! The virtio device's used-buffer and configuration-change notifications
//! reach the driver's CPU as an SPI that the device side *sets pending*
//! (`GICD_ISPENDR`), an [`IrqLine`]. This is how a device emulated in
//! software (a hypervisor, or a second core) raises a "wired" interrupt
//! without hardware behind it.
//!
//! References: Arm GIC Architecture Specification v2 (IHI 0048B), chapter 4
//! "Programmers' Model" (distributor and CPU interface register maps), and
//! GICv3/v4 (IHI 0069), chapter 12 "GIC Programmers' Model" (distributor,
//! redistributor and `ICC_*_EL1` system registers). Register access is by
//! volatile reads and writes of the MMIO frames given to the `unsafe`
//! constructors.
//!
//! Interrupts are configured as follows: priority as given (lower is more
//! urgent; the CPU interface's priority mask is opened fully by `init`),
//! trigger as given (edge is what a software-raised event wants: each
//! [`IrqLine::raise`] is one event, raises while pending coalesce), GICv3:
//! Group 1 (non-secure), delivered as IRQ; GICv2: Group 0, delivered as IRQ
//! (GICC_CTLR.FIQEn = 0), which is what a GIC without Security Extensions (QEMU
//! `virt` without `secure=on`) does; on a GICv2 with Security Extensions
//! accessed non-secure, the group registers are not writable and the secure
//! firmware's Group 1 configuration applies, with the same `init`.

use core::fmt;
use core::ptr::with_exposed_provenance_mut;

/// Bound on polling loops (`GICD_CTLR.RWP`, `GICR_WAKER.ChildrenAsleep`).
const POLL_LIMIT: u32 = 1_000_000;

/// A shared peripheral interrupt: INTID 32 to 1019.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Spi(u32);

impl Spi {
    /// The SPI with interrupt ID `intid`, or `None` outside `32..=1019`.
    #[must_use]
    pub const fn new(intid: u32) -> Option<Self> {
        if intid >= 32 && intid <= 1019 {
            Some(Self(intid))
        } else {
            None
        }
    }

    /// The interrupt ID (32 to 1019).
    #[must_use]
    pub const fn intid(self) -> u32 {
        self.0
    }
}

/// A private peripheral interrupt: INTID 16 to 31 (e.g. 27, the EL1 virtual
/// timer; 30, the EL1 physical timer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ppi(u32);

impl Ppi {
    /// The PPI with interrupt ID `intid`, or `None` outside `16..=31`.
    #[must_use]
    pub const fn new(intid: u32) -> Option<Self> {
        if intid >= 16 && intid <= 31 {
            Some(Self(intid))
        } else {
            None
        }
    }

    /// The interrupt ID (16 to 31).
    #[must_use]
    pub const fn intid(self) -> u32 {
        self.0
    }
}

/// How the GIC samples an interrupt (`GICD_ICFGR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Trigger {
    /// Level-sensitive.
    Level,
    /// Edge-triggered: every rising edge (or set-pending) is one event.
    Edge,
}

/// An acknowledged interrupt, to be passed back to `end_of_interrupt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ack {
    raw: u32,
    intid: u32,
}

impl Ack {
    /// The interrupt ID (`GICC_IAR` bits 9:0 on GICv2, whose bits 12:10 name
    /// the source CPU of an SGI; `ICC_IAR1_EL1` bits 23:0 on GICv3).
    #[must_use]
    pub const fn intid(self) -> u32 {
        self.intid
    }

    /// The raw `GICC_IAR` / `ICC_IAR1_EL1` value, written back on EOI.
    #[must_use]
    pub const fn raw(self) -> u32 {
        self.raw
    }

    /// `None` for the spurious INTIDs 1020 to 1023.
    const fn from_raw(raw: u32, intid_mask: u32) -> Option<Self> {
        let intid = raw & intid_mask;
        if intid >= 1020 && intid <= 1023 {
            None
        } else {
            Some(Self { raw, intid })
        }
    }
}

/// Why a GIC operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GicError {
    /// The INTID is beyond what `GICD_TYPER.ITLinesNumber` says is
    /// implemented.
    NotImplemented {
        /// The INTID asked for.
        intid: u32,
    },
    /// A register did not settle (`GICD_CTLR.RWP`, `GICR_WAKER`) within the
    /// poll bound.
    Timeout,
    /// No redistributor frame in the region has this affinity.
    NoRedistributor {
        /// The affinity looked for (MPIDR layout).
        affinity: u64,
    },
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotImplemented { intid } => {
                write!(f, "INTID {intid} is not implemented by this GIC")
            }
            Self::Timeout => f.write_str("GIC register did not settle"),
            Self::NoRedistributor { affinity } => {
                write!(f, "no GICv3 redistributor for affinity {affinity:#x}")
            }
        }
    }
}

impl core::error::Error for GicError {}

/// Setting, clearing and reading the pending state of an SPI: what an
/// [`IrqLine`] needs from a GIC.
pub trait SpiController {
    /// Makes `spi` pending (`GICD_ISPENDR`): it is then delivered to its
    /// target CPU if enabled and not masked.
    fn set_pending(&self, spi: Spi);
    /// Clears the pending state of `spi` (`GICD_ICPENDR`).
    fn clear_pending(&self, spi: Spi);
    /// Whether `spi` is pending.
    fn is_pending(&self, spi: Spi) -> bool;
}

impl<T: SpiController + ?Sized> SpiController for &T {
    fn set_pending(&self, spi: Spi) {
        (**self).set_pending(spi);
    }
    fn clear_pending(&self, spi: Spi) {
        (**self).clear_pending(spi);
    }
    fn is_pending(&self, spi: Spi) -> bool {
        (**self).is_pending(spi)
    }
}

/// An interrupt line from the device to a CPU: a GIC and an SPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqLine<G> {
    gic: G,
    spi: Spi,
}

impl<G: SpiController> IrqLine<G> {
    /// A line raising `spi` on `gic`. The SPI must have been enabled and
    /// routed (`enable_spi`) for a raise to be delivered.
    pub const fn new(gic: G, spi: Spi) -> Self {
        Self { gic, spi }
    }

    /// Raises the interrupt: sets the SPI pending.
    ///
    /// All memory writes made before the call (the used ring, the used index,
    /// the ISR status) are complete before the interrupt can be observed:
    /// a `dsb st` precedes the `GICD_ISPENDR` write (invariant I-BM-6).
    pub fn raise(&self) {
        store_barrier();
        self.gic.set_pending(self.spi);
    }

    /// The SPI this line raises.
    pub const fn spi(&self) -> Spi {
        self.spi
    }

    /// The GIC.
    pub const fn gic(&self) -> &G {
        &self.gic
    }
}

/// The device's interrupt line (`virtnet::mmio::InterruptLine`): raising it
/// sets the SPI pending ([`IrqLine::raise`], with its store barrier).
/// `lower` does nothing: the line is an edge, and a pending edge stays
/// pending until the CPU takes it; the driver reads InterruptStatus then.
impl<G: SpiController> virtnet::mmio::InterruptLine for IrqLine<G> {
    fn raise(&mut self) {
        IrqLine::raise(self);
    }
}

#[inline]
fn store_barrier() {
    #[cfg(target_arch = "aarch64")]
    crate::cpu::dsb_st();
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// An MMIO frame; every access is volatile.
///
/// Private: created only by the `unsafe` GIC constructors, whose contract
/// makes the frames valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Frame(usize);

impl Frame {
    fn at<T>(self, offset: usize) -> *mut T {
        with_exposed_provenance_mut(self.0.wrapping_add(offset))
    }

    fn read32(self, offset: usize) -> u32 {
        // SAFETY: the GIC constructor's contract: the frame is mapped device
        // memory of the documented size, offsets used here are inside it and
        // aligned.
        unsafe { self.at::<u32>(offset).read_volatile() }
    }

    fn write32(self, offset: usize, v: u32) {
        // SAFETY: as in `read32`.
        unsafe { self.at::<u32>(offset).write_volatile(v) }
    }

    fn write8(self, offset: usize, v: u8) {
        // SAFETY: as in `read32`; the GIC priority and target registers are
        // byte-accessible (IHI 0048B 4.3.11/4.3.12, IHI 0069 12.9.23).
        unsafe { self.at::<u8>(offset).write_volatile(v) }
    }

    fn read8(self, offset: usize) -> u8 {
        // SAFETY: as in `write8`.
        unsafe { self.at::<u8>(offset).read_volatile() }
    }

    fn read64(self, offset: usize) -> u64 {
        // SAFETY: as in `read32`; GICD_IROUTER and GICR_TYPER are 64-bit
        // registers that allow 64-bit access.
        unsafe { self.at::<u64>(offset).read_volatile() }
    }

    fn write64(self, offset: usize, v: u64) {
        // SAFETY: as in `read64`.
        unsafe { self.at::<u64>(offset).write_volatile(v) }
    }

    /// Sets the bit for `intid` in a one-bit-per-interrupt register array
    /// (write-1-to-set/clear registers: the other bits are written as 0).
    fn write_bit(self, base: usize, intid: u32) {
        let (offset, bit) = bit_reg(base, intid);
        self.write32(offset, bit);
    }

    fn read_bit(self, base: usize, intid: u32) -> bool {
        let (offset, bit) = bit_reg(base, intid);
        self.read32(offset) & bit != 0
    }

    /// Read-modify-write of the bit for `intid` in a plain register array.
    fn modify_bit(self, base: usize, intid: u32, set: bool) {
        let (offset, bit) = bit_reg(base, intid);
        let v = self.read32(offset);
        self.write32(offset, if set { v | bit } else { v & !bit });
    }

    /// Writes the two-bit `GICD_ICFGR` field of `intid`.
    fn set_trigger(self, base: usize, intid: u32, trigger: Trigger) {
        let offset = base.wrapping_add(usize_from(intid / 16).wrapping_mul(4));
        // Bit 1 of the field: 1 = edge-triggered.
        let bit = 2u32 << ((intid % 16).wrapping_mul(2));
        let v = self.read32(offset);
        self.write32(
            offset,
            match trigger {
                Trigger::Edge => v | bit,
                Trigger::Level => v & !bit,
            },
        );
    }
}

/// `(offset, mask)` of `intid` in a one-bit-per-interrupt array at `base`.
fn bit_reg(base: usize, intid: u32) -> (usize, u32) {
    (
        base.wrapping_add(usize_from(intid / 32).wrapping_mul(4)),
        1u32 << (intid % 32),
    )
}

fn usize_from(v: u32) -> usize {
    // usize is at least 32 bits on every target this crate supports.
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Distributor register offsets common to GICv2 and GICv3.
mod gicd {
    pub const CTLR: usize = 0x000;
    pub const TYPER: usize = 0x004;
    pub const IGROUPR: usize = 0x080;
    pub const ISENABLER: usize = 0x100;
    pub const ICENABLER: usize = 0x180;
    pub const ISPENDR: usize = 0x200;
    pub const ICPENDR: usize = 0x280;
    pub const ISACTIVER: usize = 0x300;
    pub const IPRIORITYR: usize = 0x400;
    /// GICv2 only.
    pub const ITARGETSR: usize = 0x800;
    pub const ICFGR: usize = 0xc00;
    /// GICv3 only: group modifier.
    pub const IGRPMODR: usize = 0xd00;
    /// GICv3 only: 64-bit routing registers, one per INTID.
    pub const IROUTER: usize = 0x6000;
    /// GICv3 `GICD_CTLR.RWP`: register write pending.
    pub const CTLR_RWP: u32 = 1 << 31;
}

fn implemented(dist: Frame, intid: u32) -> Result<(), GicError> {
    // ITLinesNumber, bits 4:0: 32 * (N + 1) INTIDs (up to 1020).
    let lines = (dist.read32(gicd::TYPER) & 0x1f)
        .wrapping_add(1)
        .wrapping_mul(32);
    if intid < lines.min(1020) {
        Ok(())
    } else {
        Err(GicError::NotImplemented { intid })
    }
}

/// A GICv2: distributor and CPU interface (memory-mapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gicv2 {
    dist: Frame,
    cpu: Frame,
}

/// GICv2 CPU interface register offsets.
mod gicc {
    pub const CTLR: usize = 0x00;
    pub const PMR: usize = 0x04;
    pub const BPR: usize = 0x08;
    pub const IAR: usize = 0x0c;
    pub const EOIR: usize = 0x10;
}

impl Gicv2 {
    /// Distributor base on QEMU `virt`.
    pub const QEMU_VIRT_DIST: usize = 0x0800_0000;
    /// CPU interface base on QEMU `virt`.
    pub const QEMU_VIRT_CPU: usize = 0x0801_0000;

    /// A driver for the GICv2 whose distributor is at `dist_base` and whose
    /// CPU interface is at `cpu_base`.
    ///
    /// # Safety
    /// * `dist_base` is the physical (or identity-mapped virtual) address of
    ///   a GICv2 distributor, 4 KiB of device memory; `cpu_base` that of its
    ///   CPU interface, 8 KiB; both stay mapped as device memory for as long
    ///   as the returned value or a copy of it is used.
    /// * No other code concurrently reprograms the same registers in a
    ///   conflicting way (this driver uses read-modify-write on the
    ///   configuration registers; set-pending and acknowledge are safe to use
    ///   concurrently).
    pub const unsafe fn new(dist_base: usize, cpu_base: usize) -> Self {
        Self {
            dist: Frame(dist_base),
            cpu: Frame(cpu_base),
        }
    }

    /// Enables the distributor and this CPU's interface: `GICD_CTLR` = 1,
    /// `GICC_PMR` = 0xff (no priority masked), `GICC_BPR` = 0, `GICC_CTLR` = 1
    /// (Group 0 signalled as IRQ; in the non-secure view, bit 0 enables
    /// Group 1).
    pub fn init(&self) {
        self.dist.write32(gicd::CTLR, 1);
        self.cpu.write32(gicc::PMR, 0xff);
        self.cpu.write32(gicc::BPR, 0);
        self.cpu.write32(gicc::CTLR, 1);
    }

    /// This CPU's bit in `GICD_ITARGETSR` (read from the banked
    /// `GICD_ITARGETSR0`), or 1 on a uniprocessor GIC where it reads as 0.
    #[must_use]
    pub fn this_cpu_target(&self) -> u8 {
        match self.dist.read8(gicd::ITARGETSR) {
            0 => 1,
            m => m,
        }
    }

    /// Configures and enables `spi`: Group 0, `priority`, `trigger`, sent to
    /// the CPUs in `targets` (a `GICD_ITARGETSR` CPU mask, e.g.
    /// [`Gicv2::this_cpu_target`]).
    ///
    /// # Errors
    /// [`GicError::NotImplemented`] if the GIC has fewer interrupt lines.
    pub fn enable_spi(
        &self,
        spi: Spi,
        priority: u8,
        trigger: Trigger,
        targets: u8,
    ) -> Result<(), GicError> {
        let intid = spi.intid();
        implemented(self.dist, intid)?;
        self.dist.write_bit(gicd::ICENABLER, intid);
        self.dist.modify_bit(gicd::IGROUPR, intid, false);
        self.dist
            .write8(gicd::IPRIORITYR.wrapping_add(usize_from(intid)), priority);
        self.dist
            .write8(gicd::ITARGETSR.wrapping_add(usize_from(intid)), targets);
        self.dist.set_trigger(gicd::ICFGR, intid, trigger);
        self.dist.write_bit(gicd::ISENABLER, intid);
        Ok(())
    }

    /// Enables the PPI `ppi` on this CPU (banked distributor registers).
    pub fn enable_ppi(&self, ppi: Ppi, priority: u8, trigger: Trigger) {
        let intid = ppi.intid();
        self.dist.modify_bit(gicd::IGROUPR, intid, false);
        self.dist
            .write8(gicd::IPRIORITYR.wrapping_add(usize_from(intid)), priority);
        self.dist.set_trigger(gicd::ICFGR, intid, trigger);
        self.dist.write_bit(gicd::ISENABLER, intid);
    }

    /// Disables `spi` (`GICD_ICENABLER`).
    pub fn disable_spi(&self, spi: Spi) {
        self.dist.write_bit(gicd::ICENABLER, spi.intid());
    }

    /// Whether `intid` is active (`GICD_ISACTIVER`).
    #[must_use]
    pub fn is_active(&self, intid: u32) -> bool {
        intid < 1020 && self.dist.read_bit(gicd::ISACTIVER, intid)
    }

    /// Acknowledges the highest-priority pending interrupt (`GICC_IAR`);
    /// `None` if it is spurious (nothing pending).
    #[must_use]
    pub fn acknowledge(&self) -> Option<Ack> {
        Ack::from_raw(self.cpu.read32(gicc::IAR), 0x3ff)
    }

    /// Signals the end of an acknowledged interrupt (`GICC_EOIR`).
    pub fn end_of_interrupt(&self, ack: Ack) {
        self.cpu.write32(gicc::EOIR, ack.raw);
    }
}

impl SpiController for Gicv2 {
    fn set_pending(&self, spi: Spi) {
        self.dist.write_bit(gicd::ISPENDR, spi.intid());
    }
    fn clear_pending(&self, spi: Spi) {
        self.dist.write_bit(gicd::ICPENDR, spi.intid());
    }
    fn is_pending(&self, spi: Spi) -> bool {
        self.dist.read_bit(gicd::ISPENDR, spi.intid())
    }
}

/// Where a GICv3 SPI is delivered (`GICD_IROUTER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Route {
    /// The PE with this affinity (MPIDR layout: Aff3 in bits 39:32, Aff2
    /// 23:16, Aff1 15:8, Aff0 7:0; e.g. `cpu::affinity()` on aarch64).
    Pe(u64),
    /// Any participating PE (`IRM` = 1).
    Any,
}

/// A GICv3: distributor and redistributors (memory-mapped) and the CPU
/// interface (`ICC_*_EL1` system registers), with affinity routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gicv3 {
    dist: Frame,
    redist: Frame,
}

/// GICv3 redistributor offsets (RD_base frame, then SGI_base frame at
/// +64 KiB).
mod gicr {
    pub const TYPER: usize = 0x0008;
    pub const WAKER: usize = 0x0014;
    pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
    pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
    pub const TYPER_VLPIS: u64 = 1 << 1;
    pub const TYPER_LAST: u64 = 1 << 4;
    pub const SGI: usize = 0x1_0000;
    pub const IGROUPR0: usize = SGI + 0x0080;
    pub const ISENABLER0: usize = SGI + 0x0100;
    pub const IPRIORITYR: usize = SGI + 0x0400;
    pub const ICFGR: usize = SGI + 0x0c00;
    /// Frame stride without and with virtual LPI frames (GICv4).
    pub const STRIDE: usize = 0x2_0000;
    pub const STRIDE_VLPI: usize = 0x4_0000;
    /// Bound on the frames searched.
    pub const MAX_FRAMES: u32 = 4096;
}

/// `GICR_TYPER.Affinity_Value` (Aff3.Aff2.Aff1.Aff0, bits 63:32) of an
/// MPIDR-layout affinity.
const fn packed_affinity(aff: u64) -> u64 {
    (aff & 0xff_ffff) | ((aff >> 8) & 0xff00_0000)
}

impl Gicv3 {
    /// Distributor base on QEMU `virt`.
    pub const QEMU_VIRT_DIST: usize = 0x0800_0000;
    /// Redistributor region base on QEMU `virt`.
    pub const QEMU_VIRT_REDIST: usize = 0x080a_0000;

    /// A driver for the GICv3 whose distributor is at `dist_base` and whose
    /// redistributor region (contiguous frames, one per PE, the last with
    /// `GICR_TYPER.Last` set) starts at `redist_base`.
    ///
    /// # Safety
    /// * `dist_base` is the address of a GICv3 distributor (64 KiB of device
    ///   memory) and `redist_base` that of its redistributor region (128 KiB
    ///   per PE, 256 KiB with GICv4 virtual LPIs) up to and including the
    ///   frame marked Last; both stay mapped as device memory while the value
    ///   or a copy is used.
    /// * No other code concurrently reprograms the same registers in a
    ///   conflicting way (set-pending and acknowledge are safe to use
    ///   concurrently).
    pub const unsafe fn new(dist_base: usize, redist_base: usize) -> Self {
        Self {
            dist: Frame(dist_base),
            redist: Frame(redist_base),
        }
    }

    fn wait_rwp(&self) -> Result<(), GicError> {
        for _ in 0..POLL_LIMIT {
            if self.dist.read32(gicd::CTLR) & gicd::CTLR_RWP == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(GicError::Timeout)
    }

    /// Enables the distributor with affinity routing: writes `GICD_CTLR` = 0,
    /// then ARE (bit 4), then ARE | EnableGrp1 | bit 0, waiting for `RWP`
    /// after each write (with a single security state bits 1 and 0 enable
    /// Group 1 and Group 0; in the non-secure view Group 1A and Group 1).
    ///
    /// # Errors
    /// [`GicError::Timeout`] if `RWP` never clears.
    pub fn init_distributor(&self) -> Result<(), GicError> {
        self.dist.write32(gicd::CTLR, 0);
        self.wait_rwp()?;
        self.dist.write32(gicd::CTLR, 1 << 4);
        self.wait_rwp()?;
        self.dist.write32(gicd::CTLR, (1 << 4) | (1 << 1) | 1);
        self.wait_rwp()
    }

    /// Finds the redistributor frame (RD_base) of the PE with `affinity`
    /// (MPIDR layout) by walking the region's `GICR_TYPER`s.
    ///
    /// # Errors
    /// [`GicError::NoRedistributor`] if the frame marked Last is passed.
    pub fn redistributor(&self, affinity: u64) -> Result<usize, GicError> {
        let want = packed_affinity(affinity);
        let mut frame = self.redist;
        for _ in 0..gicr::MAX_FRAMES {
            let typer = frame.read64(gicr::TYPER);
            if typer >> 32 == want {
                return Ok(frame.0);
            }
            if typer & gicr::TYPER_LAST != 0 {
                break;
            }
            let stride = if typer & gicr::TYPER_VLPIS != 0 {
                gicr::STRIDE_VLPI
            } else {
                gicr::STRIDE
            };
            frame = Frame(frame.0.wrapping_add(stride));
        }
        Err(GicError::NoRedistributor { affinity })
    }

    /// Wakes the redistributor of the PE with `affinity`: clears
    /// `GICR_WAKER.ProcessorSleep` and waits for `ChildrenAsleep` to clear.
    ///
    /// # Errors
    /// [`GicError::NoRedistributor`], or [`GicError::Timeout`] if the
    /// redistributor stays asleep.
    pub fn wake_redistributor(&self, affinity: u64) -> Result<(), GicError> {
        let rd = Frame(self.redistributor(affinity)?);
        let waker = rd.read32(gicr::WAKER);
        rd.write32(gicr::WAKER, waker & !gicr::WAKER_PROCESSOR_SLEEP);
        for _ in 0..POLL_LIMIT {
            if rd.read32(gicr::WAKER) & gicr::WAKER_CHILDREN_ASLEEP == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(GicError::Timeout)
    }

    /// Configures and enables `spi`: Group 1 (non-secure), `priority`,
    /// `trigger`, routed by `route` (`GICD_IROUTER`).
    ///
    /// # Errors
    /// [`GicError::NotImplemented`] if the GIC has fewer interrupt lines.
    pub fn enable_spi(
        &self,
        spi: Spi,
        priority: u8,
        trigger: Trigger,
        route: Route,
    ) -> Result<(), GicError> {
        let intid = spi.intid();
        implemented(self.dist, intid)?;
        self.dist.write_bit(gicd::ICENABLER, intid);
        self.wait_rwp()?;
        self.dist.modify_bit(gicd::IGROUPR, intid, true);
        self.dist.modify_bit(gicd::IGRPMODR, intid, false);
        self.dist
            .write8(gicd::IPRIORITYR.wrapping_add(usize_from(intid)), priority);
        self.dist.set_trigger(gicd::ICFGR, intid, trigger);
        let router = match route {
            Route::Pe(aff) => aff & 0xff_00ff_ffff,
            Route::Any => 1 << 31,
        };
        self.dist.write64(
            gicd::IROUTER.wrapping_add(usize_from(intid).wrapping_mul(8)),
            router,
        );
        self.dist.write_bit(gicd::ISENABLER, intid);
        Ok(())
    }

    /// Disables `spi` (`GICD_ICENABLER`) and waits for the write to take
    /// effect.
    ///
    /// # Errors
    /// [`GicError::Timeout`] if `RWP` never clears.
    pub fn disable_spi(&self, spi: Spi) -> Result<(), GicError> {
        self.dist.write_bit(gicd::ICENABLER, spi.intid());
        self.wait_rwp()
    }

    /// Enables the PPI `ppi` of the PE with `affinity` (its redistributor's
    /// SGI_base frame): Group 1, `priority`, `trigger`.
    ///
    /// # Errors
    /// [`GicError::NoRedistributor`].
    pub fn enable_ppi(
        &self,
        affinity: u64,
        ppi: Ppi,
        priority: u8,
        trigger: Trigger,
    ) -> Result<(), GicError> {
        let rd = Frame(self.redistributor(affinity)?);
        let intid = ppi.intid();
        rd.modify_bit(gicr::IGROUPR0, intid, true);
        rd.write8(gicr::IPRIORITYR.wrapping_add(usize_from(intid)), priority);
        rd.set_trigger(gicr::ICFGR, intid, trigger);
        rd.write_bit(gicr::ISENABLER0, intid);
        Ok(())
    }

    /// Whether `intid` (an SPI) is active (`GICD_ISACTIVER`).
    #[must_use]
    pub fn is_active(&self, spi: Spi) -> bool {
        self.dist.read_bit(gicd::ISACTIVER, spi.intid())
    }
}

#[cfg(target_arch = "aarch64")]
impl Gicv3 {
    /// Initialises the GIC for the calling PE: [`Gicv3::init_distributor`],
    /// [`Gicv3::wake_redistributor`] for this PE's affinity and
    /// [`Gicv3::init_cpu_interface`].
    ///
    /// # Errors
    /// As for those functions.
    pub fn init(&self) -> Result<(), GicError> {
        self.init_distributor()?;
        self.wake_redistributor(crate::cpu::affinity())?;
        Self::init_cpu_interface();
        Ok(())
    }

    /// Enables the calling PE's CPU interface through the system registers:
    /// `ICC_SRE_EL1` = SRE|DFB|DIB, `ICC_PMR_EL1` = 0xff, `ICC_BPR1_EL1` = 0,
    /// `ICC_IGRPEN1_EL1` = 1.
    pub fn init_cpu_interface() {
        // SAFETY: writes of the GICv3 CPU interface registers of the calling
        // PE (S3_0_C12_C12_5 = ICC_SRE_EL1, S3_0_C4_C6_0 = ICC_PMR_EL1,
        // S3_0_C12_C12_3 = ICC_BPR1_EL1, S3_0_C12_C12_7 = ICC_IGRPEN1_EL1);
        // they only change interrupt delivery, not memory.
        unsafe {
            core::arch::asm!(
                "mrs {t}, S3_0_C12_C12_5",
                "orr {t}, {t}, #7",
                "msr S3_0_C12_C12_5, {t}",
                "isb",
                "mov {t}, #0xff",
                "msr S3_0_C4_C6_0, {t}",
                "msr S3_0_C12_C12_3, xzr",
                "mov {t}, #1",
                "msr S3_0_C12_C12_7, {t}",
                "isb",
                t = out(reg) _,
                options(nostack, preserves_flags)
            );
        }
    }

    /// Acknowledges the highest-priority pending Group 1 interrupt
    /// (`ICC_IAR1_EL1`); `None` if spurious.
    #[must_use]
    pub fn acknowledge(&self) -> Option<Ack> {
        let raw: u64;
        // SAFETY: reading ICC_IAR1_EL1 (S3_0_C12_C12_0) acknowledges an
        // interrupt; it does not access memory.
        unsafe {
            core::arch::asm!("mrs {}, S3_0_C12_C12_0", out(reg) raw, options(nostack, preserves_flags))
        };
        // INTID is bits 23:0.
        Ack::from_raw((raw & 0x00ff_ffff) as u32, 0x00ff_ffff)
    }

    /// Signals the end of an acknowledged interrupt (`ICC_EOIR1_EL1`).
    pub fn end_of_interrupt(&self, ack: Ack) {
        // SAFETY: writing ICC_EOIR1_EL1 (S3_0_C12_C12_1) completes the
        // interrupt; it does not access memory.
        unsafe {
            core::arch::asm!("msr S3_0_C12_C12_1, {}", in(reg) u64::from(ack.raw), options(nostack, preserves_flags))
        };
    }
}

impl SpiController for Gicv3 {
    fn set_pending(&self, spi: Spi) {
        self.dist.write_bit(gicd::ISPENDR, spi.intid());
    }
    fn clear_pending(&self, spi: Spi) {
        self.dist.write_bit(gicd::ICPENDR, spi.intid());
    }
    fn is_pending(&self, spi: Spi) -> bool {
        self.dist.read_bit(gicd::ISPENDR, spi.intid())
    }
}

#[cfg(test)]
mod tests;
