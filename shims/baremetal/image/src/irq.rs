//! The image's GIC (detected at boot), its IRQ handler and interrupt counters,
//! and a bounded `wfi` wait backed by the EL1 virtual timer.

use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use virtnet_baremetal::cpu;
use virtnet_baremetal::gic::{Ack, Gicv2, Gicv3, Ppi, Route, Spi, SpiController, Trigger};

/// The SPI the tests raise (INTID 48).
pub const TEST_SPI: Spi = match Spi::new(48) {
    Some(s) => s,
    None => panic!(),
};

/// The SPI of the virtnet device (INTID 96: clear of the SPIs QEMU `virt`
/// wires to its own devices, 33-79).
pub const VIRTIO_SPI: Spi = match Spi::new(96) {
    Some(s) => s,
    None => panic!(),
};

/// The EL1 virtual timer's PPI (INTID 27), used as a wake-up bound for `wfi`.
pub const VTIMER_PPI: Ppi = match Ppi::new(27) {
    Some(p) => p,
    None => panic!(),
};

// SAFETY: these are the GIC frames of QEMU `virt` (GICD 0x0800_0000, GICC
// 0x0801_0000, GICR 0x080a_0000), device memory at these addresses with the
// MMU off; only the boot code configures them, before IRQs are unmasked.
const GICV2: Gicv2 = unsafe { Gicv2::new(Gicv2::QEMU_VIRT_DIST, Gicv2::QEMU_VIRT_CPU) };
// SAFETY: as above.
const GICV3: Gicv3 = unsafe { Gicv3::new(Gicv3::QEMU_VIRT_DIST, Gicv3::QEMU_VIRT_REDIST) };

/// 0 = not initialised, else the detected GIC version (2 or 3).
static VERSION: AtomicU8 = AtomicU8::new(0);

/// Number of times the IRQ handler saw [`TEST_SPI`].
pub static SPI_COUNT: AtomicU32 = AtomicU32::new(0);
/// Number of times the IRQ handler saw [`VIRTIO_SPI`].
pub static VIRTIO_IRQS: AtomicU32 = AtomicU32::new(0);
/// Deliveries of [`VIRTIO_SPI`] whose InterruptStatus had the used-buffer
/// bit.
pub static ISR_VRING: AtomicU32 = AtomicU32::new(0);
/// Deliveries of [`VIRTIO_SPI`] whose InterruptStatus had the
/// configuration-change bit.
pub static ISR_CONFIG: AtomicU32 = AtomicU32::new(0);
/// Deliveries of [`VIRTIO_SPI`] that found InterruptStatus 0.
pub static ISR_EMPTY: AtomicU32 = AtomicU32::new(0);
/// Number of timer interrupts.
pub static TIMER_COUNT: AtomicU32 = AtomicU32::new(0);
/// Number of interrupts with any other INTID.
pub static OTHER_COUNT: AtomicU32 = AtomicU32::new(0);
/// The last unexpected INTID.
pub static LAST_OTHER: AtomicU32 = AtomicU32::new(0);

/// The GIC of this machine.
#[derive(Clone, Copy)]
pub enum Gic {
    /// GICv2 (`-M virt`).
    V2(Gicv2),
    /// GICv3 (`-M virt,gic-version=3`).
    V3(Gicv3),
}

impl SpiController for Gic {
    fn set_pending(&self, spi: Spi) {
        match self {
            Self::V2(g) => g.set_pending(spi),
            Self::V3(g) => g.set_pending(spi),
        }
    }
    fn clear_pending(&self, spi: Spi) {
        match self {
            Self::V2(g) => g.clear_pending(spi),
            Self::V3(g) => g.clear_pending(spi),
        }
    }
    fn is_pending(&self, spi: Spi) -> bool {
        match self {
            Self::V2(g) => g.is_pending(spi),
            Self::V3(g) => g.is_pending(spi),
        }
    }
}

impl Gic {
    fn acknowledge(&self) -> Option<Ack> {
        match self {
            Self::V2(g) => g.acknowledge(),
            Self::V3(g) => g.acknowledge(),
        }
    }

    fn end_of_interrupt(&self, ack: Ack) {
        match self {
            Self::V2(g) => g.end_of_interrupt(ack),
            Self::V3(g) => g.end_of_interrupt(ack),
        }
    }

    /// The GIC version, 2 or 3.
    pub fn version(&self) -> u8 {
        match self {
            Self::V2(_) => 2,
            Self::V3(_) => 3,
        }
    }
}

/// The initialised GIC; `None` before [`init`].
pub fn gic() -> Option<Gic> {
    match VERSION.load(Ordering::Acquire) {
        2 => Some(Gic::V2(GICV2)),
        3 => Some(Gic::V3(GICV3)),
        _ => None,
    }
}

/// Detects the GIC version: `ID_AA64PFR0_EL1.GIC` (bits 27:24) is non-zero
/// when the GICv3 system-register CPU interface is present; then
/// `GICD_PIDR2.ArchRev` (offset 0xffe8) must say 3 or 4. Otherwise the
/// GICv2 `ICPIDR2.ArchRev` (offset 0xfe8) must say 2.
fn detect() -> Result<u8, &'static str> {
    let pfr0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack)) };
    let read_id = |offset: usize| {
        let addr = Gicv3::QEMU_VIRT_DIST + offset;
        // SAFETY: offset lies within the distributor frame of the version
        // being probed (0xfe8 < 4 KiB for GICv2, 0xffe8 < 64 KiB for GICv3).
        unsafe { core::ptr::with_exposed_provenance::<u32>(addr).read_volatile() }
    };
    if (pfr0 >> 24) & 0xf != 0 {
        match (read_id(0xffe8) >> 4) & 0xf {
            3 | 4 => Ok(3),
            _ => Err("CPU has the GICv3 interface but GICD_PIDR2 is not GICv3/v4"),
        }
    } else {
        match (read_id(0xfe8) >> 4) & 0xf {
            2 => Ok(2),
            _ => Err("no GICv3 CPU interface and ICPIDR2 is not GICv2"),
        }
    }
}

/// Detects and initialises the GIC, enables [`TEST_SPI`] and [`VIRTIO_SPI`]
/// (edge, routed to this CPU) and [`VTIMER_PPI`]. Interrupts stay masked.
pub fn init() -> Result<Gic, &'static str> {
    let version = detect()?;
    match version {
        2 => {
            GICV2.init();
            GICV2
                .enable_spi(TEST_SPI, 0xa0, Trigger::Edge, GICV2.this_cpu_target())
                .map_err(|_| "GICv2 enable_spi failed")?;
            GICV2
                .enable_spi(VIRTIO_SPI, 0xa0, Trigger::Edge, GICV2.this_cpu_target())
                .map_err(|_| "GICv2 enable_spi (virtio) failed")?;
            GICV2.enable_ppi(VTIMER_PPI, 0x80, Trigger::Level);
        }
        _ => {
            GICV3.init().map_err(|_| "GICv3 init failed")?;
            GICV3
                .enable_spi(TEST_SPI, 0xa0, Trigger::Edge, Route::Pe(cpu::affinity()))
                .map_err(|_| "GICv3 enable_spi failed")?;
            GICV3
                .enable_spi(VIRTIO_SPI, 0xa0, Trigger::Edge, Route::Pe(cpu::affinity()))
                .map_err(|_| "GICv3 enable_spi (virtio) failed")?;
            GICV3
                .enable_ppi(cpu::affinity(), VTIMER_PPI, 0x80, Trigger::Level)
                .map_err(|_| "GICv3 enable_ppi failed")?;
        }
    }
    VERSION.store(version, Ordering::Release);
    gic().ok_or("GIC version not recorded")
}

fn timer_disable() {
    // SAFETY: CNTV_CTL_EL0 = 0 turns the EL1 virtual timer off; no memory.
    unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nomem, nostack)) };
}

/// Arms the virtual timer to fire after `ticks` counter ticks.
fn timer_arm(ticks: u64) {
    // SAFETY: programs the EL1 virtual timer (TVAL, then CTL.ENABLE = 1 with
    // IMASK = 0); no memory.
    unsafe {
        asm!(
            "msr cntv_tval_el0, {t}",
            "mov {c}, #1",
            "msr cntv_ctl_el0, {c}",
            "isb",
            t = in(reg) ticks,
            c = out(reg) _,
            options(nomem, nostack)
        )
    };
}

/// The IRQ handler: acknowledges every pending interrupt, counts it, and
/// signals its end. For [`VIRTIO_SPI`] it also reads the device's
/// InterruptStatus and acknowledges it (InterruptAck), through the run's
/// register path (trapped loads and stores, or direct calls).
pub fn handle_irq() {
    let Some(gic) = gic() else {
        OTHER_COUNT.fetch_add(1, Ordering::SeqCst);
        return;
    };
    // Bounded: a storm of interrupts is still visible as a count.
    for _ in 0..64 {
        let Some(ack) = gic.acknowledge() else { break };
        match ack.intid() {
            id if id == TEST_SPI.intid() => {
                SPI_COUNT.fetch_add(1, Ordering::SeqCst);
            }
            id if id == VIRTIO_SPI.intid() => {
                VIRTIO_IRQS.fetch_add(1, Ordering::SeqCst);
                let status = crate::vio::read32(virtnet::mmio::regs::INTERRUPT_STATUS);
                if status & virtnet::mmio::INT_VRING != 0 {
                    ISR_VRING.fetch_add(1, Ordering::SeqCst);
                }
                if status & virtnet::mmio::INT_CONFIG != 0 {
                    ISR_CONFIG.fetch_add(1, Ordering::SeqCst);
                }
                if status == 0 {
                    ISR_EMPTY.fetch_add(1, Ordering::SeqCst);
                } else {
                    crate::vio::write32(virtnet::mmio::regs::INTERRUPT_ACK, status);
                }
            }
            id if id == VTIMER_PPI.intid() => {
                // Level-sensitive: silence the timer before EOI.
                timer_disable();
                TIMER_COUNT.fetch_add(1, Ordering::SeqCst);
            }
            id => {
                LAST_OTHER.store(id, Ordering::SeqCst);
                OTHER_COUNT.fetch_add(1, Ordering::SeqCst);
            }
        }
        gic.end_of_interrupt(ack);
    }
}

/// Waits, with `wfi`, until `counter` reaches `target` or `millis`
/// milliseconds pass. Race-free: the count is checked with IRQs masked and
/// `wfi` wakes on a pending interrupt even while masked; the virtual timer,
/// re-armed for 1 ms before each `wfi`, bounds every sleep. Returns whether
/// the target was reached. Leaves IRQs unmasked.
pub fn wait_for(counter: &AtomicU32, target: u32, millis: u64) -> bool {
    let freq = cpu::counter_frequency().max(1000);
    let deadline = cpu::counter().saturating_add(freq / 1000 * millis);
    let reached = loop {
        cpu::disable_irqs();
        if counter.load(Ordering::SeqCst) >= target {
            break true;
        }
        if cpu::counter() >= deadline {
            break false;
        }
        timer_arm(freq / 1000);
        cpu::wfi();
        // SAFETY: the image's only interrupt-sensitive state is atomics.
        unsafe { cpu::enable_irqs() };
    };
    timer_disable();
    // SAFETY: as above.
    unsafe { cpu::enable_irqs() };
    reached
}

/// Busy-waits `micros` microseconds (IRQ state unchanged).
pub fn spin_micros(micros: u64) {
    let freq = cpu::counter_frequency().max(1_000_000);
    let end = cpu::counter().saturating_add(freq / 1_000_000 * micros);
    while cpu::counter() < end {
        core::hint::spin_loop();
    }
}
