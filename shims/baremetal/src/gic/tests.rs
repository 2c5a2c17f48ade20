//! Host tests of the GIC drivers against fake register frames (plain memory):
//! register offsets, bit positions and the redistributor walk.

use super::*;
use std::vec;
use std::vec::Vec;

/// Zeroed, 8-byte aligned fake MMIO memory.
struct Fake {
    mem: Vec<u64>,
}

impl Fake {
    fn new(bytes: usize) -> Self {
        Self {
            mem: vec![0; bytes / 8],
        }
    }
    fn base(&mut self) -> usize {
        self.mem.as_mut_ptr().expose_provenance()
    }
    fn r32(&self, off: usize) -> u32 {
        let w = self.mem[off / 8];
        (if off % 8 == 0 { w } else { w >> 32 }) as u32
    }
    fn w32(&mut self, off: usize, v: u32) {
        let w = &mut self.mem[off / 8];
        if off % 8 == 0 {
            *w = (*w & !0xffff_ffff) | u64::from(v);
        } else {
            *w = (*w & 0xffff_ffff) | (u64::from(v) << 32);
        }
    }
    fn r8(&self, off: usize) -> u8 {
        (self.mem[off / 8] >> ((off % 8) * 8)) as u8
    }
    fn r64(&self, off: usize) -> u64 {
        self.mem[off / 8]
    }
    fn w64(&mut self, off: usize, v: u64) {
        self.mem[off / 8] = v;
    }
}

const SPI48: Spi = match Spi::new(48) {
    Some(s) => s,
    None => panic!(),
};

#[test]
fn spi_and_ppi_ranges() {
    assert_eq!(Spi::new(31), None);
    assert_eq!(Spi::new(32).map(Spi::intid), Some(32));
    assert_eq!(Spi::new(1019).map(Spi::intid), Some(1019));
    assert_eq!(Spi::new(1020), None);
    assert_eq!(Ppi::new(15), None);
    assert_eq!(Ppi::new(27).map(Ppi::intid), Some(27));
    assert_eq!(Ppi::new(32), None);
}

#[test]
fn spurious_acks_are_none() {
    for raw in 1020..=1023 {
        assert_eq!(Ack::from_raw(raw, 0x3ff), None);
        assert_eq!(Ack::from_raw(raw, 0xff_ffff), None);
    }
    // GICv2: source CPU bits 12:10 are kept in raw, not in the INTID.
    let a = Ack::from_raw((3 << 10) | 5, 0x3ff).unwrap();
    assert_eq!((a.intid(), a.raw()), (5, (3 << 10) | 5));
    assert_eq!(Ack::from_raw(48, 0xff_ffff).unwrap().intid(), 48);
}

#[test]
fn gicv2_offsets() {
    let mut dist = Fake::new(0x1000);
    let mut cpu = Fake::new(0x2000);
    dist.w32(0x004, 2); // TYPER: 96 lines
    dist.w32(0x080 + 4, 0xffff_ffff); // IGROUPR1 all group 1 before
                                      // SAFETY: the fakes outlive the driver and are large enough.
    let gic = unsafe { Gicv2::new(dist.base(), cpu.base()) };
    gic.init();
    assert_eq!(dist.r32(0x000), 1);
    assert_eq!(cpu.r32(0x000), 1);
    assert_eq!(cpu.r32(0x004), 0xff);
    assert_eq!(gic.this_cpu_target(), 1);
    gic.enable_spi(SPI48, 0xa0, Trigger::Edge, 1).unwrap();
    // INTID 48: word 1, bit 16.
    assert_eq!(dist.r32(0x100 + 4), 1 << 16, "ISENABLER1");
    assert_eq!(
        dist.r32(0x180 + 4),
        1 << 16,
        "ICENABLER1 (disabled while configuring)"
    );
    assert_eq!(
        dist.r32(0x080 + 4),
        !(1 << 16),
        "IGROUPR1: group 0, others untouched"
    );
    assert_eq!(dist.r8(0x400 + 48), 0xa0, "IPRIORITYR");
    assert_eq!(dist.r8(0x800 + 48), 1, "ITARGETSR");
    // ICFGR3 covers INTIDs 48..=63; INTID 48 is field 0, edge = bit 1.
    assert_eq!(dist.r32(0xc00 + 12), 0b10, "ICFGR3");
    gic.set_pending(SPI48);
    assert_eq!(dist.r32(0x200 + 4), 1 << 16, "ISPENDR1");
    assert!(gic.is_pending(SPI48));
    gic.clear_pending(SPI48);
    assert_eq!(dist.r32(0x280 + 4), 1 << 16, "ICPENDR1");
    assert_eq!(
        gic.enable_spi(Spi::new(96).unwrap(), 0, Trigger::Level, 1),
        Err(GicError::NotImplemented { intid: 96 })
    );
    gic.enable_spi(Spi::new(95).unwrap(), 0, Trigger::Level, 1)
        .unwrap();
    cpu.w32(0x00c, 48);
    let ack = gic.acknowledge().unwrap();
    assert_eq!(ack.intid(), 48);
    gic.end_of_interrupt(ack);
    assert_eq!(cpu.r32(0x010), 48, "EOIR");
    cpu.w32(0x00c, 1023);
    assert_eq!(gic.acknowledge(), None);
}

#[test]
fn gicv2_ppi_and_level() {
    let mut dist = Fake::new(0x1000);
    let mut cpu = Fake::new(0x2000);
    dist.w32(0xc04, 0xffff_ffff);
    // SAFETY: the fakes outlive the driver and are large enough.
    let gic = unsafe { Gicv2::new(dist.base(), cpu.base()) };
    gic.enable_ppi(Ppi::new(27).unwrap(), 0x80, Trigger::Level);
    // INTID 27 is field 11 of ICFGR1: bits 23:22; level clears bit 23.
    assert_eq!(dist.r32(0xc04), !(1 << 23));
    assert_eq!(dist.r32(0x100), 1 << 27);
    assert_eq!(dist.r8(0x400 + 27), 0x80);
}

#[test]
fn irq_line_raises_its_spi() {
    let mut dist = Fake::new(0x1000);
    let mut cpu = Fake::new(0x2000);
    // SAFETY: the fakes outlive the driver and are large enough.
    let gic = unsafe { Gicv2::new(dist.base(), cpu.base()) };
    let line = IrqLine::new(&gic, Spi::new(1019).unwrap());
    line.raise();
    // INTID 1019: word 31, bit 27.
    assert_eq!(dist.r32(0x200 + 31 * 4), 1 << 27);
    assert_eq!(line.spi().intid(), 1019);
}

/// The core's `InterruptLine` on an `IrqLine` sets the SPI pending in the
/// distributor (GICv3 layout: same ISPENDR array), and `lower` leaves it.
#[test]
fn irq_line_is_the_devices_interrupt_line() {
    use virtnet::mmio::InterruptLine;
    let mut dist = Fake::new(0x1_0000);
    // SAFETY: the fake outlives the driver and is large enough; the
    // redistributor is not touched by set-pending.
    let gic = unsafe { Gicv3::new(dist.base(), dist.base()) };
    let mut line = IrqLine::new(gic, Spi::new(96).unwrap());
    fn raise_through_core(l: &mut impl InterruptLine) {
        l.raise();
        l.lower();
    }
    raise_through_core(&mut line);
    // INTID 96: word 3, bit 0 of GICD_ISPENDR (0x200).
    assert_eq!(dist.r32(0x200 + 3 * 4), 1);
    assert_eq!(dist.r32(0x280 + 3 * 4), 0, "lower does not clear pending");
}

#[test]
fn gicv3_distributor_and_routing() {
    let mut dist = Fake::new(0x1_0000);
    let mut redist = Fake::new(0x2_0000);
    dist.w32(0x004, 31); // TYPER: 1024 lines -> 1020 usable
                         // SAFETY: the fakes outlive the driver and are large enough.
    let gic = unsafe { Gicv3::new(dist.base(), redist.base()) };
    gic.init_distributor().unwrap();
    assert_eq!(dist.r32(0x000), 0x13, "GICD_CTLR: ARE | EnableGrp1 | bit 0");
    gic.enable_spi(SPI48, 0x90, Trigger::Edge, Route::Pe(0x0000_0001_0002_0304))
        .unwrap();
    assert_eq!(dist.r32(0x080 + 4), 1 << 16, "IGROUPR1: group 1");
    assert_eq!(dist.r32(0xd00 + 4), 0, "IGRPMODR1");
    assert_eq!(dist.r8(0x400 + 48), 0x90);
    assert_eq!(dist.r32(0xc00 + 12), 0b10);
    assert_eq!(
        dist.r64(0x6000 + 48 * 8),
        0x0000_0001_0002_0304,
        "IROUTER48"
    );
    assert_eq!(dist.r32(0x100 + 4), 1 << 16);
    gic.enable_spi(Spi::new(49).unwrap(), 0x90, Trigger::Edge, Route::Any)
        .unwrap();
    assert_eq!(dist.r64(0x6000 + 49 * 8), 1 << 31, "IROUTER49: IRM");
    assert!(gic
        .enable_spi(Spi::new(1019).unwrap(), 0, Trigger::Edge, Route::Any)
        .is_ok());
    gic.set_pending(SPI48);
    assert_eq!(dist.r32(0x204), 1 << 16);
}

#[test]
fn gicv3_redistributor_walk_and_wake() {
    let mut dist = Fake::new(0x1_0000);
    let mut redist = Fake::new(4 * 0x2_0000);
    // Three frames: affinities 0.0.0.0, 0.0.0.1 (VLPIS: 256 KiB), 1.0.0.2 (Last).
    redist.w64(0x8, 0);
    redist.w64(0x2_0000 + 0x8, (1 << 32) | (1 << 1));
    redist.w64(0x6_0000 + 0x8, (0x0100_0002 << 32) | (1 << 4));
    redist.w32(0x6_0000 + 0x14, 0b110); // ProcessorSleep | ChildrenAsleep
    redist.w32(0x2_0000 + 0x14, 0b010); // ProcessorSleep
                                        // SAFETY: the fakes outlive the driver and are large enough.
    let gic = unsafe { Gicv3::new(dist.base(), redist.base()) };
    let base = redist.base();
    assert_eq!(gic.redistributor(0), Ok(base));
    assert_eq!(gic.redistributor(1), Ok(base + 0x2_0000));
    assert_eq!(gic.redistributor(0x01_0000_0002), Ok(base + 0x6_0000));
    assert_eq!(
        gic.redistributor(3),
        Err(GicError::NoRedistributor { affinity: 3 })
    );
    gic.wake_redistributor(1).unwrap();
    assert_eq!(redist.r32(0x2_0000 + 0x14), 0, "ProcessorSleep cleared");
    // ChildrenAsleep stuck (the fake does not clear it): bounded, reported.
    assert_eq!(
        gic.wake_redistributor(0x01_0000_0002),
        Err(GicError::Timeout)
    );
    gic.enable_ppi(1, Ppi::new(27).unwrap(), 0x80, Trigger::Level)
        .unwrap();
    let sgi = 0x2_0000 + 0x1_0000;
    assert_eq!(redist.r32(sgi + 0x80), 1 << 27, "GICR_IGROUPR0");
    assert_eq!(redist.r32(sgi + 0x100), 1 << 27, "GICR_ISENABLER0");
    assert_eq!(redist.r8(sgi + 0x400 + 27), 0x80, "GICR_IPRIORITYR");
}

#[test]
fn packed_affinity_layout() {
    assert_eq!(packed_affinity(0x0000_00ab_00cd_ef01), 0xab_cd_ef_01);
    assert_eq!(packed_affinity(0xffff_ffab_ff12_3456), 0xab12_3456);
}

#[test]
fn errors_display() {
    use std::string::ToString;
    assert!(GicError::Timeout.to_string().contains("settle"));
    assert!(GicError::NotImplemented { intid: 7 }
        .to_string()
        .contains('7'));
    assert!(GicError::NoRedistributor { affinity: 0x101 }
        .to_string()
        .contains("0x101"));
}
