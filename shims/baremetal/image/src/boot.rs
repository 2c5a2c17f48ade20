//! Entry point, EL1 exception vector table, and the Rust side of exception
//! handling.
//!
//! `_start` (first in `.text`, at 0x4008_0000): parks secondary cores, enables
//! FP/SIMD (CPACR_EL1.FPEN = 0b11) before any Rust code can use SIMD
//! registers, zeroes `.bss`; if started at EL2, clears CPTR_EL2.TFP, installs
//! the EL2 vectors and calls `el2_setup` on the EL2 stack, then drops to EL1h;
//! at EL1 it sets the stack, installs the vector table in VBAR_EL1 and calls
//! `rust_main`. The EL2 vectors share the frame layout and call
//! `el2_exception_entry`.
//!
//! Every vector entry saves the full context (x0-x30, ELR, SPSR, FPCR, FPSR,
//! q0-q31: the interrupted code may be using any of them) into an
//! [`ExceptionFrame`] on the stack and calls [`exception_entry`] with the
//! entry's index. IRQs (index 5, current EL with SP_ELx) go to the image's IRQ
//! handler and return with `eret`; a synchronous exception that a test did not
//! ask for, and any other kind of exception, prints the syndrome over
//! semihosting and exits with status 3, so a bug never hangs silently.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use virtnet_baremetal::{hprintln, semihosting};

/// Exit status for an unexpected exception.
pub const EXIT_EXCEPTION: u32 = 3;

global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    mrs     x0, mpidr_el1
    and     x0, x0, #0xff
    cbnz    x0, .Lpark

    // FP/SIMD on before any Rust code (CPACR_EL1.FPEN = 0b11).
    mov     x0, #(3 << 20)
    msr     cpacr_el1, x0
    isb

    // Zero .bss once, before either exception level's Rust code runs.
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
1:  cmp     x0, x1
    b.hs    2f
    str     xzr, [x0], #8
    b       1b
2:
    mrs     x0, CurrentEL
    cmp     x0, #(2 << 2)
    b.ne    .Lel1

    // Started at EL2 (-M virt,virtualization=on): no FP traps from EL2
    // (CPTR_EL2.TFP = 0, RES1 bits set), EL2 stack and vectors, then the
    // Rust set-up (stage 2 etc.), then drop to EL1h with DAIF masked.
    mov     x0, #0x33ff
    msr     cptr_el2, x0
    isb
    adrp    x0, __el2_stack_top
    add     x0, x0, :lo12:__el2_stack_top
    mov     sp, x0
    adrp    x0, __vectors_el2
    add     x0, x0, :lo12:__vectors_el2
    msr     vbar_el2, x0
    isb
    bl      el2_setup
    mov     x0, #0x3c5
    msr     spsr_el2, x0
    adr     x0, .Lel1
    msr     elr_el2, x0
    eret

.Lel1:
    adrp    x0, __stack_top
    add     x0, x0, :lo12:__stack_top
    mov     sp, x0
    adrp    x0, __vectors
    add     x0, x0, :lo12:__vectors
    msr     vbar_el1, x0
    isb

    bl      rust_main
.Lpark:
    wfe
    b       .Lpark

    // Frame: x0-x30 at 0..248, ELR 248, SPSR 256, FPCR 264, FPSR 272,
    // padding 280, q0-q31 at 288..800.
    .equ FRAME_SIZE, 800

    .macro VECTOR kind, common
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       \common
    .endm

    .macro VECTORS common
    VECTOR 0, \common
    VECTOR 1, \common
    VECTOR 2, \common
    VECTOR 3, \common
    VECTOR 4, \common
    VECTOR 5, \common
    VECTOR 6, \common
    VECTOR 7, \common
    VECTOR 8, \common
    VECTOR 9, \common
    VECTOR 10, \common
    VECTOR 11, \common
    VECTOR 12, \common
    VECTOR 13, \common
    VECTOR 14, \common
    VECTOR 15, \common
    .endm

    // Saves the rest of the frame, calls \handler(frame, kind), restores
    // everything and returns with eret. \el is el1 or el2.
    .macro EXCEPTION_COMMON el, handler
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, elr_\el
    stp     x30, x1, [sp, #240]
    mrs     x1, spsr_\el
    mrs     x2, fpcr
    stp     x1, x2, [sp, #256]
    mrs     x2, fpsr
    str     x2, [sp, #272]
    add     x1, sp, #288
    stp     q0, q1, [x1, #0]
    stp     q2, q3, [x1, #32]
    stp     q4, q5, [x1, #64]
    stp     q6, q7, [x1, #96]
    stp     q8, q9, [x1, #128]
    stp     q10, q11, [x1, #160]
    stp     q12, q13, [x1, #192]
    stp     q14, q15, [x1, #224]
    stp     q16, q17, [x1, #256]
    stp     q18, q19, [x1, #288]
    stp     q20, q21, [x1, #320]
    stp     q22, q23, [x1, #352]
    stp     q24, q25, [x1, #384]
    stp     q26, q27, [x1, #416]
    stp     q28, q29, [x1, #448]
    stp     q30, q31, [x1, #480]

    mov     x1, x0
    mov     x0, sp
    bl      \handler

    add     x1, sp, #288
    ldp     q0, q1, [x1, #0]
    ldp     q2, q3, [x1, #32]
    ldp     q4, q5, [x1, #64]
    ldp     q6, q7, [x1, #96]
    ldp     q8, q9, [x1, #128]
    ldp     q10, q11, [x1, #160]
    ldp     q12, q13, [x1, #192]
    ldp     q14, q15, [x1, #224]
    ldp     q16, q17, [x1, #256]
    ldp     q18, q19, [x1, #288]
    ldp     q20, q21, [x1, #320]
    ldp     q22, q23, [x1, #352]
    ldp     q24, q25, [x1, #384]
    ldp     q26, q27, [x1, #416]
    ldp     q28, q29, [x1, #448]
    ldp     q30, q31, [x1, #480]
    ldp     x1, x2, [sp, #256]
    msr     spsr_\el, x1
    msr     fpcr, x2
    ldr     x2, [sp, #272]
    msr     fpsr, x2
    ldp     x30, x1, [sp, #240]
    msr     elr_\el, x1
    ldp     x28, x29, [sp, #224]
    ldp     x26, x27, [sp, #208]
    ldp     x24, x25, [sp, #192]
    ldp     x22, x23, [sp, #176]
    ldp     x20, x21, [sp, #160]
    ldp     x18, x19, [sp, #144]
    ldp     x16, x17, [sp, #128]
    ldp     x14, x15, [sp, #112]
    ldp     x12, x13, [sp, #96]
    ldp     x10, x11, [sp, #80]
    ldp     x8, x9, [sp, #64]
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global __vectors
__vectors:
    VECTORS __exception_common
    .balign 0x800
    .global __vectors_el2
__vectors_el2:
    VECTORS __exception_common_el2

__exception_common:
    EXCEPTION_COMMON el1, exception_entry
__exception_common_el2:
    EXCEPTION_COMMON el2, el2_exception_entry
"#
);

/// The context saved by the vector entry, in the layout `__exception_common`
/// writes.
#[repr(C)]
pub struct ExceptionFrame {
    /// x0 to x30.
    pub x: [u64; 31],
    /// ELR_EL1: where `eret` resumes.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    /// FPCR.
    pub fpcr: u64,
    /// FPSR.
    pub fpsr: u64,
    /// Keeps `q` 16-byte aligned.
    pub pad: u64,
    /// q0 to q31.
    pub q: [u128; 32],
}

const _: () = assert!(core::mem::size_of::<ExceptionFrame>() == 800);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, elr) == 248);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, q) == 288);

/// Vector entry names, by index (offset / 0x80).
const KINDS: [&str; 16] = [
    "sync (current EL, SP_EL0)",
    "irq (current EL, SP_EL0)",
    "fiq (current EL, SP_EL0)",
    "serror (current EL, SP_EL0)",
    "sync (current EL, SP_ELx)",
    "irq (current EL, SP_ELx)",
    "fiq (current EL, SP_ELx)",
    "serror (current EL, SP_ELx)",
    "sync (lower EL, AArch64)",
    "irq (lower EL, AArch64)",
    "fiq (lower EL, AArch64)",
    "serror (lower EL, AArch64)",
    "sync (lower EL, AArch32)",
    "irq (lower EL, AArch32)",
    "fiq (lower EL, AArch32)",
    "serror (lower EL, AArch32)",
];

/// A synchronous exception a test provoked on purpose: the syndrome it saw.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1.
    pub far: u64,
    /// ELR_EL1 (the faulting instruction).
    pub elr: u64,
}

static EXPECT_FAULT: AtomicBool = AtomicBool::new(false);
static FAULT_ESR: AtomicU64 = AtomicU64::new(0);
static FAULT_FAR: AtomicU64 = AtomicU64::new(0);
static FAULT_ELR: AtomicU64 = AtomicU64::new(0);
static IN_FATAL: AtomicBool = AtomicBool::new(false);

/// Runs `f` allowing one synchronous exception: if one happens, its syndrome
/// is recorded, the faulting instruction is skipped (ELR += 4) and the fault
/// is returned.
pub fn catch_fault(f: impl FnOnce()) -> Option<Fault> {
    FAULT_ESR.store(0, Ordering::SeqCst);
    EXPECT_FAULT.store(true, Ordering::SeqCst);
    f();
    let caught = !EXPECT_FAULT.swap(false, Ordering::SeqCst);
    caught.then(|| Fault {
        esr: FAULT_ESR.load(Ordering::SeqCst),
        far: FAULT_FAR.load(Ordering::SeqCst),
        elr: FAULT_ELR.load(Ordering::SeqCst),
    })
}

fn read_esr_far() -> (u64, u64) {
    let (esr, far): (u64, u64);
    // SAFETY: reading the EL1 syndrome registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, esr_el1", "mrs {}, far_el1", out(reg) esr, out(reg) far, options(nomem, nostack))
    };
    (esr, far)
}

/// Called by `__exception_common` with the saved context and the vector
/// index.
#[no_mangle]
extern "C" fn exception_entry(frame: &mut ExceptionFrame, kind: u64) {
    match kind {
        5 => crate::irq::handle_irq(),
        4 if EXPECT_FAULT.load(Ordering::SeqCst) => {
            let (esr, far) = read_esr_far();
            FAULT_ESR.store(esr, Ordering::SeqCst);
            FAULT_FAR.store(far, Ordering::SeqCst);
            FAULT_ELR.store(frame.elr, Ordering::SeqCst);
            EXPECT_FAULT.store(false, Ordering::SeqCst);
            frame.elr = frame.elr.wrapping_add(4);
        }
        _ => fatal(frame, kind),
    }
}

fn fatal(frame: &ExceptionFrame, kind: u64) -> ! {
    if IN_FATAL.swap(true, Ordering::SeqCst) {
        // A fault while reporting a fault (e.g. no semihosting host): the
        // runner's timeout reports the hang.
        loop {
            core::hint::spin_loop();
        }
    }
    let (esr, far) = read_esr_far();
    let name = usize::try_from(kind)
        .ok()
        .and_then(|k| KINDS.get(k))
        .copied()
        .unwrap_or("?");
    hprintln!("unexpected exception: {name}");
    hprintln!(
        "  ESR_EL1={esr:#018x} (EC={:#04x}) ELR_EL1={:#018x} FAR_EL1={far:#018x} SPSR_EL1={:#x}",
        (esr >> 26) & 0x3f,
        frame.elr,
        frame.spsr
    );
    hprintln!(
        "  x0={:#x} x1={:#x} x29={:#x} x30={:#x}",
        frame.x[0],
        frame.x[1],
        frame.x[29],
        frame.x[30]
    );
    semihosting::exit(EXIT_EXCEPTION)
}
