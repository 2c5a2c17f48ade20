//! `critical-section` implementation for a single-core AArch64 system: a
//! critical section masks IRQ, FIQ, SError and debug exceptions (DAIF) and
//! restores the saved DAIF value on release, so nested sections and sections
//! entered with interrupts already masked behave correctly.
//!
//! Limits: this only excludes exception handlers on the *same* core. With
//! more than one core running, code on another core is not stopped; a
//! multi-core system needs an implementation that also takes a spinlock
//! (with DAIF masked, so a handler on the lock holder's core cannot spin on
//! it). Enabled by the `critical-section-single-core` feature, which only a
//! binary should select.

struct SingleCoreDaif;

critical_section::set_impl!(SingleCoreDaif);

// SAFETY: on a single core, with all of DAIF masked no exception handler can
// run until `release`, so nothing else executes inside the section;
// `release` restores exactly the state `acquire` saved, which keeps
// interrupts masked when the section was nested in another one.
unsafe impl critical_section::Impl for SingleCoreDaif {
    unsafe fn acquire() -> critical_section::RawRestoreState {
        crate::cpu::mask_all()
    }

    unsafe fn release(daif: critical_section::RawRestoreState) {
        // SAFETY: `daif` is the value saved by the matching `acquire`
        // (critical-section's contract), so this only unmasks what was
        // unmasked before the section began.
        unsafe { crate::cpu::restore_daif(daif) }
    }
}
