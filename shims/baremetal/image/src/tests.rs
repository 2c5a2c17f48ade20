//! The image's tests. Each returns `Ok(())` or a reason for failing.

use core::sync::atomic::Ordering;

use virtnet_aarch64::{
    complete_mmio, decode_data_abort, emulate_data_abort, exception_class, AbortError, AccessSize,
    MmioHandler, EC_DATA_ABORT_SAME,
};
use virtnet_baremetal::cpu;
use virtnet_baremetal::gic::{IrqLine, SpiController};
use virtnet_baremetal::hprintln;

use crate::boot::catch_fault;
use crate::el2;
use crate::irq::{self, Gic, OTHER_COUNT, SPI_COUNT, TEST_SPI};

/// A test's outcome.
pub type Outcome = Result<(), &'static str>;

/// A named test.
pub struct Test {
    /// Printed as `test NAME ... ok|FAILED`.
    pub name: &'static str,
    /// The test body.
    pub run: fn(&Gic) -> Outcome,
}

/// Every test, in order.
pub const TESTS: &[Test] = &[
    Test {
        name: "gic_spi_set_pending_reaches_irq_handler",
        run: spi_reaches_handler,
    },
    Test {
        name: "gic_spi_raised_100_times_counts_100",
        run: spi_100_times,
    },
    Test {
        name: "gic_edge_spi_raises_coalesce_while_pending",
        run: raises_coalesce_while_masked,
    },
    Test {
        name: "critical_section_masks_spi_until_release",
        run: critical_section_masks,
    },
    Test {
        name: "critical_section_nested_release_keeps_masked",
        run: critical_section_nested,
    },
    Test {
        name: "critical_section_restores_entry_daif",
        run: critical_section_restores_daif,
    },
    Test {
        name: "mmio_decode_and_serve_round_trip",
        run: decode_round_trip,
    },
    Test {
        name: "real_same_el_abort_is_classified_not_emulated",
        run: real_abort,
    },
];

/// Run last.
pub const FINAL_TESTS: &[Test] = &[Test {
    name: "no_unexpected_interrupts",
    run: no_unexpected_interrupts,
}];

/// `Ok(())` if `ok`, else the reason.
pub fn check(ok: bool, why: &'static str) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(why)
    }
}

fn line(gic: &Gic) -> IrqLine<Gic> {
    IrqLine::new(*gic, TEST_SPI)
}

/// (a) One raise: the real IRQ handler runs and counts exactly one SPI.
fn spi_reaches_handler(gic: &Gic) -> Outcome {
    let before = SPI_COUNT.load(Ordering::SeqCst);
    line(gic).raise();
    check(
        irq::wait_for(&SPI_COUNT, before + 1, 100),
        "SPI 48 not delivered within 100 ms",
    )?;
    // No duplicate delivery.
    irq::spin_micros(2000);
    check(
        SPI_COUNT.load(Ordering::SeqCst) == before + 1,
        "SPI 48 delivered more than once",
    )?;
    check(
        !gic.is_pending(TEST_SPI),
        "SPI 48 still pending after handling",
    )
}

/// (a) 100 raises, each waited for: exactly 100 deliveries.
fn spi_100_times(gic: &Gic) -> Outcome {
    let start = SPI_COUNT.load(Ordering::SeqCst);
    let line = line(gic);
    for i in 1..=100 {
        line.raise();
        if !irq::wait_for(&SPI_COUNT, start + i, 100) {
            hprintln!(
                "    raise {i} not delivered; count {}",
                SPI_COUNT.load(Ordering::SeqCst) - start
            );
            return Err("a raise was not delivered");
        }
        if SPI_COUNT.load(Ordering::SeqCst) != start + i {
            return Err("a raise was delivered more than once");
        }
    }
    irq::spin_micros(2000);
    let got = SPI_COUNT.load(Ordering::SeqCst) - start;
    if got != 100 {
        hprintln!("    handler counted {got} for 100 raises");
        return Err("count differs from raises");
    }
    Ok(())
}

/// Edge semantics: raises while the SPI is already pending (IRQs masked)
/// coalesce into one delivery, which is what a device's "notify" wants.
fn raises_coalesce_while_masked(gic: &Gic) -> Outcome {
    let before = SPI_COUNT.load(Ordering::SeqCst);
    let line = line(gic);
    cpu::disable_irqs();
    for _ in 0..5 {
        line.raise();
    }
    let pending = gic.is_pending(TEST_SPI);
    irq::spin_micros(500);
    let untouched = SPI_COUNT.load(Ordering::SeqCst) == before;
    check(
        irq::wait_for(&SPI_COUNT, before + 1, 100),
        "coalesced SPI not delivered",
    )?;
    irq::spin_micros(2000);
    check(pending, "SPI not pending after raise")?;
    check(untouched, "handler ran with IRQs masked")?;
    check(
        SPI_COUNT.load(Ordering::SeqCst) == before + 1,
        "5 raises while pending gave more than one interrupt",
    )
}

/// (b) A raise inside a critical section is not handled until it ends.
fn critical_section_masks(gic: &Gic) -> Outcome {
    let before = SPI_COUNT.load(Ordering::SeqCst);
    let line = line(gic);
    let (pending, ran_inside) = critical_section::with(|_| {
        line.raise();
        irq::spin_micros(2000);
        (
            gic.is_pending(TEST_SPI),
            SPI_COUNT.load(Ordering::SeqCst) != before,
        )
    });
    check(!ran_inside, "IRQ handler ran inside the critical section")?;
    check(pending, "SPI not pending inside the critical section")?;
    check(
        irq::wait_for(&SPI_COUNT, before + 1, 100),
        "SPI not delivered after the critical section",
    )?;
    check(
        SPI_COUNT.load(Ordering::SeqCst) == before + 1,
        "more than one delivery",
    )
}

/// (b) Releasing an inner critical section does not unmask: the outer one
/// still holds the interrupt off.
fn critical_section_nested(gic: &Gic) -> Outcome {
    let before = SPI_COUNT.load(Ordering::SeqCst);
    let line = line(gic);
    let ran_inside = critical_section::with(|_| {
        critical_section::with(|_| line.raise());
        irq::spin_micros(2000);
        SPI_COUNT.load(Ordering::SeqCst) != before
    });
    check(!ran_inside, "inner release unmasked IRQs")?;
    check(
        irq::wait_for(&SPI_COUNT, before + 1, 100),
        "SPI not delivered after the outer section",
    )
}

/// (b) A critical section entered with IRQs masked leaves them masked, and
/// one entered with them unmasked leaves them unmasked.
fn critical_section_restores_daif(_gic: &Gic) -> Outcome {
    let unmasked = cpu::daif();
    let inside = critical_section::with(|_| cpu::daif());
    let after = cpu::daif();
    check(unmasked & cpu::DAIF_I == 0, "IRQs masked at test start")?;
    check(
        inside & (cpu::DAIF_D | cpu::DAIF_A | cpu::DAIF_I | cpu::DAIF_F) == 0x3c0,
        "DAIF not fully masked inside",
    )?;
    check(after == unmasked, "DAIF not restored after release")?;
    cpu::disable_irqs();
    let masked = cpu::daif();
    critical_section::with(|_| ());
    let after_masked = cpu::daif();
    // SAFETY: the image's interrupt-sensitive state is atomics only.
    unsafe { cpu::enable_irqs() };
    check(
        after_masked == masked,
        "release unmasked IRQs that were masked on entry",
    )
}

/// A toy MMIO device: four 32-bit registers at 0x0a00_0000.
struct Dummy {
    regs: [u32; 4],
    accesses: u32,
}

const DUMMY_BASE: u64 = 0x0a00_0000;

impl MmioHandler for Dummy {
    fn read(&mut self, ipa: u64, size: AccessSize) -> u64 {
        self.accesses += 1;
        let i = ((ipa - DUMMY_BASE) / 4) as usize;
        let v = u64::from(self.regs.get(i).copied().unwrap_or(u32::MAX));
        let _ = size;
        v
    }

    fn write(&mut self, ipa: u64, size: AccessSize, value: u64) {
        self.accesses += 1;
        let i = ((ipa - DUMMY_BASE) / 4) as usize;
        if let Some(r) = self.regs.get_mut(i) {
            *r = (value & size.mask()) as u32;
        }
    }
}

/// (c) Synthetic syndromes decoded and served against a dummy device and a
/// register block, on the target.
fn decode_round_trip(_gic: &Gic) -> Outcome {
    let mut dev = Dummy {
        regs: [0; 4],
        accesses: 0,
    };
    let mut regs = [0u64; 31];
    let mut pc = 0x4000_1000u64;
    regs[3] = 0xdead_beef_0000_8001;
    // str w3, [x0] at +8: EC=0x24 IL ISV SAS=2 SRT=3 WnR DFSC=6.
    pc += emulate_data_abort(0x9383_0046, DUMMY_BASE + 8, &mut regs, &mut dev)
        .map_err(|_| "str w3 rejected")?;
    check(dev.regs[2] == 0x0000_8001, "str w3 stored the wrong value")?;
    // ldrsh x5, [x0] at +8: SAS=1 SSE SRT=5 SF.
    pc += emulate_data_abort(0x9365_8006, DUMMY_BASE + 8, &mut regs, &mut dev)
        .map_err(|_| "ldrsh x5 rejected")?;
    check(
        regs[5] == 0xffff_ffff_ffff_8001,
        "ldrsh x5 not sign-extended to 64 bits",
    )?;
    // ldrsh w6, [x0]: SF=0, sign-extended to 32 bits, upper half clear.
    pc += emulate_data_abort(0x9366_0006, DUMMY_BASE + 8, &mut regs, &mut dev)
        .map_err(|_| "ldrsh w6 rejected")?;
    check(
        regs[6] == 0xffff_8001,
        "ldrsh w6 not sign-extended to 32 bits",
    )?;
    // strb wzr, [x0] at +8: stores 0 into the low byte.
    let a = decode_data_abort(0x931f_0046, DUMMY_BASE + 8).map_err(|_| "strb wzr rejected")?;
    pc += complete_mmio(&a, &mut regs, &mut dev);
    check(dev.regs[2] == 0, "strb wzr did not store 0")?;
    // ldr wzr, [x0]: the device is read, no register changes.
    let before = regs;
    pc += emulate_data_abort(0x939f_0006, DUMMY_BASE, &mut regs, &mut dev)
        .map_err(|_| "ldr wzr rejected")?;
    check(regs == before, "load into wzr changed a register")?;
    check(
        pc == 0x4000_1000 + 5 * 4,
        "PC increments do not add up to 5 instructions",
    )?;
    check(dev.accesses == 5, "device access count")?;
    // stp x0, x1, [x2]: ISV=0, refused, nothing touched.
    let r = emulate_data_abort(0x9200_0046, DUMMY_BASE, &mut regs, &mut dev);
    check(r == Err(AbortError::NoValidSyndrome), "ISV=0 not refused")?;
    check(
        dev.accesses == 5 && regs == before,
        "refused access touched state",
    )
}

/// A real data abort taken at EL1 (a load from an address with nothing
/// behind it on QEMU `virt`): the decoder recognises the class, and refuses
/// to emulate it because a same-level abort without stage 2 carries no
/// instruction syndrome on QEMU (ISV = 0).
fn real_abort(_gic: &Gic) -> Outcome {
    // A hole in QEMU virt's memory map, below the PCIe MMIO window.
    const HOLE: usize = 0x0f00_0000;
    let fault = catch_fault(|| {
        // SAFETY: reading an unmapped physical address raises a synchronous
        // external abort, which `catch_fault` turns into a skipped
        // instruction; no Rust memory is involved.
        let v = unsafe { core::ptr::with_exposed_provenance::<u32>(HOLE).read_volatile() };
        core::hint::black_box(v);
    });
    let Some(f) = fault else {
        return Err("no abort from an unmapped address");
    };
    hprintln!(
        "    ESR_EL1={:#x} FAR_EL1={:#x} ELR_EL1={:#x}",
        f.esr,
        f.far,
        f.elr
    );
    check(
        exception_class(f.esr) == EC_DATA_ABORT_SAME,
        "not a same-EL data abort",
    )?;
    check(f.far == HOLE as u64, "FAR is not the faulting address")?;
    match decode_data_abort(f.esr, f.far) {
        Err(AbortError::NoValidSyndrome) => Ok(()),
        Ok(a) if a.size == AccessSize::Word && !a.write => Ok(()),
        _ => Err("decoder result inconsistent with the instruction"),
    }
}

/// No interrupt other than the test SPI and the timer was taken.
fn no_unexpected_interrupts(_gic: &Gic) -> Outcome {
    let n = OTHER_COUNT.load(Ordering::SeqCst);
    if n != 0 {
        hprintln!(
            "    {n} unexpected interrupts, last INTID {}",
            irq::LAST_OTHER.load(Ordering::SeqCst)
        );
        return Err("unexpected interrupts");
    }
    Ok(())
}

/// Tests that need the EL2 hypervisor (`-M virt,virtualization=on`).
pub const EL2_TESTS: &[Test] = &[
    Test {
        name: "el2_trapped_guest_accesses_have_golden_syndromes",
        run: el2_golden,
    },
    Test {
        name: "el2_isv0_guest_access_is_refused_not_emulated",
        run: el2_isv0,
    },
];

/// Runs `f` (one guest access to the trapping window) and returns the
/// syndrome and IPA the EL2 handler saw; fails unless exactly one trap was
/// served without error.
fn trap(f: impl FnOnce()) -> Result<(u64, u64), &'static str> {
    let before = el2::TRAPS.load(Ordering::SeqCst);
    f();
    check(
        el2::TRAPS.load(Ordering::SeqCst) == before + 1,
        "access did not trap exactly once",
    )?;
    check(
        el2::LAST_ERROR.load(Ordering::SeqCst) == 0,
        "EL2 refused the access",
    )?;
    Ok((
        el2::LAST_ESR.load(Ordering::SeqCst),
        el2::LAST_IPA.load(Ordering::SeqCst),
    ))
}

fn expect(what: &'static str, got: (u64, u64), esr: u64, ipa: u64) -> Outcome {
    if got == (esr, ipa) {
        Ok(())
    } else {
        hprintln!(
            "    {what}: ESR_EL2={:#x} IPA={:#x}, expected {esr:#x} at {ipa:#x}",
            got.0,
            got.1
        );
        Err("syndrome differs from the golden value")
    }
}

/// One guest access to the trapping window, through [`trap`].
macro_rules! guest {
    ($($asm:tt)*) => {
        trap(|| {
            // SAFETY: one load or store to the trapping window, which the EL2
            // handler emulates and skips; the only registers changed are the
            // declared outputs.
            unsafe { core::arch::asm!($($asm)*) }
        })
    };
}

/// Real guest loads and stores to the unmapped window, served at EL2: the
/// syndromes are exactly the literals of `virtnet-aarch64`'s golden table
/// (translation fault at level 2, DFSC 0x06) and the values round-trip
/// through the decoder, including sign extension and the zero register.
fn el2_golden(_gic: &Gic) -> Outcome {
    let b = el2::TOY_WINDOW;
    let r =
        guest!("str w1, [x0]", in("x0") b, in("x1") 0x1122_3344_8000_8081u64, options(nostack))?;
    expect("str w1, [x0]", r, 0x9381_0046, b)?;
    let mut v = 0u64;
    let r = guest!("ldr w1, [x0]", in("x0") b, out("x1") v, options(nostack))?;
    expect("ldr w1, [x0]", r, 0x9381_0006, b)?;
    check(v == 0x8000_8081, "ldr w1 value")?;
    let r = guest!("ldrsb w4, [x0]", in("x0") b, out("x4") v, options(nostack))?;
    expect("ldrsb w4, [x0]", r, 0x9324_0006, b)?;
    check(
        v == 0xffff_ff81,
        "ldrsb w4 value (sign-extended to 32 bits)",
    )?;
    let r = guest!("ldrsh x3, [x0]", in("x0") b, out("x3") v, options(nostack))?;
    expect("ldrsh x3, [x0]", r, 0x9363_8006, b)?;
    check(v == 0xffff_ffff_ffff_8081, "ldrsh x3 value")?;
    let r = guest!("ldrsw x6, [x0]", in("x0") b, out("x6") v, options(nostack))?;
    expect("ldrsw x6, [x0]", r, 0x93a6_8006, b)?;
    check(v == 0xffff_ffff_8000_8081, "ldrsw x6 value")?;
    let r = guest!("str x2, [x0, #8]", in("x0") b, in("x2") 0x0123_4567_89ab_cdefu64, options(nostack))?;
    expect("str x2, [x0, #8]", r, 0x93c2_8046, b + 8)?;
    let r = guest!("ldr x7, [x0, #8]", in("x0") b, out("x7") v, options(nostack))?;
    expect("ldr x7, [x0, #8]", r, 0x93c7_8006, b + 8)?;
    check(v == 0x0123_4567_89ab_cdef, "ldr x7 value")?;
    let r = guest!("ldrh w8, [x0, #10]", in("x0") b, out("x8") v, options(nostack))?;
    expect("ldrh w8, [x0, #10]", r, 0x9348_0006, b + 10)?;
    check(v == 0x89ab, "ldrh w8 value")?;
    let r = guest!("strb wzr, [x0]", in("x0") b, options(nostack))?;
    expect("strb wzr, [x0]", r, 0x931f_0046, b)?;
    let r = guest!("ldar w5, [x0]", in("x0") b, out("x5") v, options(nostack))?;
    expect("ldar w5, [x0]", r, 0x9385_4006, b)?;
    check(
        v == 0x8000_8000,
        "strb wzr did not store 0, or ldar w5 value",
    )?;
    let r = guest!("stlr x9, [x0]", in("x0") b + 16, in("x9") 0xfeed_f00d_dead_beefu64, options(nostack))?;
    expect("stlr x9, [x0]", r, 0x93c9_c046, b + 16)?;
    let r = guest!("ldr wzr, [x0, #16]", in("x0") b, options(nostack))?;
    expect("ldr wzr, [x0, #16]", r, 0x939f_0006, b + 16)?;
    let r = guest!("ldr x10, [x0, #16]", in("x0") b, out("x10") v, options(nostack))?;
    expect("ldr x10, [x0, #16]", r, 0x93ca_8006, b + 16)?;
    check(v == 0xfeed_f00d_dead_beef, "stlr x9 / ldr x10 round trip")
}

/// A load/store pair has no instruction syndrome (ISV = 0): EL2 refuses it
/// (I-BM-1) instead of guessing.
fn el2_isv0(_gic: &Gic) -> Outcome {
    let before = el2::TRAPS.load(Ordering::SeqCst);
    // SAFETY: one store pair to the trapping window; EL2 records and skips it.
    unsafe {
        core::arch::asm!("stp x1, x2, [x0]", in("x0") el2::TOY_WINDOW, in("x1") 1u64, in("x2") 2u64, options(nostack))
    };
    check(
        el2::TRAPS.load(Ordering::SeqCst) == before + 1,
        "stp did not trap exactly once",
    )?;
    let esr = el2::LAST_ESR.load(Ordering::SeqCst);
    hprintln!("    stp x1, x2, [x0]: ESR_EL2={esr:#x}");
    check(
        esr == 0x9200_0046,
        "stp syndrome is not EC=0x24 IL ISV=0 WnR DFSC=6",
    )?;
    check(
        el2::LAST_ERROR.load(Ordering::SeqCst) == el2::ERR_NO_VALID_SYNDROME,
        "not refused as NoValidSyndrome",
    )
}
