//! Small wrappers around AArch64 system instructions used by the shim
//! (EL1 or EL2; `DAIF`, `MPIDR_EL1`, `CurrentEL`, `wfi`, barriers).

use core::arch::asm;

/// DAIF bit masking IRQs (PSTATE.I).
pub const DAIF_I: u64 = 1 << 7;
/// DAIF bit masking FIQs (PSTATE.F).
pub const DAIF_F: u64 = 1 << 6;
/// DAIF bit masking SErrors (PSTATE.A).
pub const DAIF_A: u64 = 1 << 8;
/// DAIF bit masking debug exceptions (PSTATE.D).
pub const DAIF_D: u64 = 1 << 9;

/// Reads the current DAIF value (bits 9:6 hold D, A, I, F).
#[inline]
#[must_use]
pub fn daif() -> u64 {
    let v: u64;
    // SAFETY: reading DAIF has no side effects; `nomem` is correct because
    // it does not access memory.
    unsafe { asm!("mrs {}, daif", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Masks IRQ, FIQ, SError and debug exceptions; returns the previous DAIF
/// value for [`restore_daif`]. Also a compiler barrier: memory accesses are
/// not moved across it.
#[inline]
#[must_use]
pub fn mask_all() -> u64 {
    let v: u64;
    // SAFETY: masking exceptions cannot break memory safety; the asm is a
    // compiler memory barrier (no `nomem`) so accesses stay inside.
    unsafe {
        asm!("mrs {}, daif", "msr daifset, #0xf", out(reg) v, options(nostack, preserves_flags))
    };
    v
}

/// Writes DAIF back to a value saved by [`mask_all`] (or [`daif`]).
///
/// # Safety
/// Unmasking interrupts lets their handlers run: the caller must not be in a
/// section that relies on them being masked (for example, it must not hold a
/// critical section entered after `saved` was read), unless `saved` keeps
/// them masked.
#[inline]
pub unsafe fn restore_daif(saved: u64) {
    // SAFETY: the caller guarantees that unmasking is allowed here; the asm is
    // a compiler memory barrier so accesses do not leak out of a section.
    unsafe { asm!("msr daif, {}", in(reg) saved, options(nostack, preserves_flags)) };
}

/// Unmasks IRQs (`msr daifclr, #2`) and synchronises, so that a pending IRQ
/// is taken before the next instruction.
///
/// # Safety
/// As for [`restore_daif`]: IRQ handlers may run from here on.
#[inline]
pub unsafe fn enable_irqs() {
    // SAFETY: the caller allows interrupt handlers to run; compiler barrier.
    unsafe { asm!("msr daifclr, #2", "isb", options(nostack, preserves_flags)) };
}

/// Masks IRQs (`msr daifset, #2`). Compiler barrier.
#[inline]
pub fn disable_irqs() {
    // SAFETY: masking cannot break memory safety.
    unsafe { asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}

/// `MPIDR_EL1`: the affinity of this PE.
#[inline]
#[must_use]
pub fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// This PE's affinity in the `MPIDR_EL1`/`GICD_IROUTER` layout: Aff3 in bits
/// 39:32, Aff2 23:16, Aff1 15:8, Aff0 7:0 (other bits clear).
#[inline]
#[must_use]
pub fn affinity() -> u64 {
    mpidr() & 0xff_00ff_ffff
}

/// The current exception level, 0 to 3.
#[inline]
#[must_use]
pub fn current_el() -> u8 {
    let v: u64;
    // SAFETY: reading CurrentEL has no side effects.
    unsafe { asm!("mrs {}, CurrentEL", out(reg) v, options(nomem, nostack, preserves_flags)) };
    // Bits 3:2; masked, so the cast is lossless.
    ((v >> 2) & 3) as u8
}

/// Waits for an interrupt (`wfi`). Returns when an interrupt is pending at
/// the PE, even if PSTATE masks it.
#[inline]
pub fn wfi() {
    // SAFETY: `wfi` only suspends execution; compiler barrier so that polled
    // memory is re-read afterwards.
    unsafe { asm!("wfi", options(nostack, preserves_flags)) };
}

/// `dsb st`: completes all earlier stores (to Normal memory too) before any
/// later memory access, such as an MMIO write raising an interrupt.
#[inline]
pub fn dsb_st() {
    // SAFETY: a barrier has no effect on memory safety.
    unsafe { asm!("dsb st", options(nostack, preserves_flags)) };
}

/// `isb`: context synchronisation.
#[inline]
pub fn isb() {
    // SAFETY: a barrier has no effect on memory safety.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}

/// Reads the virtual counter `CNTVCT_EL0`.
#[inline]
#[must_use]
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading the counter has no side effects.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// The counter frequency `CNTFRQ_EL0` in Hz.
#[inline]
#[must_use]
pub fn counter_frequency() -> u64 {
    let v: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}
