//! When QEMU starts the image at EL2 (`-M virt,virtualization=on`), a minimal
//! hypervisor: stage-2 translation with one 2 MiB hole at 0x0a00_0000, and a
//! trap handler for the EL1 program's loads and stores to that hole:
//! * the virtio-mmio window at `hyp::VIRTIO_BASE` (0x0a00_0000) is served
//!   by virtnet's device through `virtnet_baremetal::trap` (the true
//!   hypervisor path); an access it refuses is answered by injecting a
//!   synchronous external abort into EL1, never by guessing;
//! * a small byte-addressed toy device at [`TOY_WINDOW`] (0x0a10_0000)
//!   gives the decoder *real* ISV = 1 syndromes from the CPU model for the
//!   golden-syndrome tests;
//! * `hvc #0` is the host-control channel (`hyp::host_op`).
//!
//! Everything else is identity-mapped, so the rest of the image runs at EL1
//! unchanged. All device work runs in `heap::device_context`.
use core::arch::asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use virtnet_aarch64::{
    emulate_data_abort, exception_class, ipa_from_hpfar_far, AbortError, AccessSize, MmioHandler,
    VcpuRegs, EC_DATA_ABORT_LOWER,
};
use virtnet_baremetal::{hprintln, semihosting};

use crate::boot::{ExceptionFrame, EXIT_EXCEPTION};
use crate::{heap, hyp};

/// Start of the 2 MiB guest-physical hole that stage 2 leaves unmapped
/// (QEMU `virt`'s virtio-mmio area).
pub const STAGE2_HOLE: u64 = 0x0a00_0000;
/// The toy device's window, inside the hole.
pub const TOY_WINDOW: u64 = 0x0a10_0000;
/// Size of the trapping device's register file.
pub const DEVICE_BYTES: usize = 64;

/// Whether the image was started at EL2 and set up stage 2.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Number of toy-device data aborts served (or refused) at EL2.
pub static TRAPS: AtomicU32 = AtomicU32::new(0);
/// Number of virtio-mmio data aborts served at EL2.
pub static VIRTIO_TRAPS: AtomicU64 = AtomicU64::new(0);
/// Number of virtio-mmio data aborts refused (an abort was injected).
pub static VIRTIO_REFUSED: AtomicU32 = AtomicU32::new(0);
/// Number of hypercalls served.
pub static HVCS: AtomicU64 = AtomicU64::new(0);
/// The last trapped syndrome (ESR_EL2) and IPA.
pub static LAST_ESR: AtomicU64 = AtomicU64::new(0);
/// The IPA of the last trapped access.
pub static LAST_IPA: AtomicU64 = AtomicU64::new(0);
/// 0 when the last trap was emulated, else 1 + the `AbortError` index.
pub static LAST_ERROR: AtomicU32 = AtomicU32::new(0);

/// Whether the EL2 hypervisor is present.
pub fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: written only by `el2_setup` before EL1 code runs; afterwards only
// the MMU reads it.
unsafe impl Sync for Table {}

static S2_L1: Table = Table(UnsafeCell::new([0; 512]));
static S2_L2: Table = Table(UnsafeCell::new([0; 512]));

/// Stage-2 block descriptor attributes (Arm ARM, "Stage 2 translation table
/// descriptor" attributes): AF, S2AP = read/write, and MemAttr.
const S2_AF: u64 = 1 << 10;
const S2_RW: u64 = 3 << 6;
const S2_BLOCK: u64 = 0b01;
const S2_TABLE: u64 = 0b11;
/// MemAttr = 0b0001: Device-nGnRE.
const S2_DEVICE: u64 = 0b0001 << 2;
/// MemAttr = 0b1111: Normal, Write-Back; SH = Inner Shareable.
const S2_NORMAL: u64 = (0b1111 << 2) | (3 << 8);

/// The device behind the trapping window: bytes, little-endian, like memory.
struct Device(UnsafeCell<[u8; DEVICE_BYTES]>);

// SAFETY: only the EL2 trap handler touches it, one trap at a time (EL2
// exceptions are taken with interrupts masked, and the single guest vCPU is
// stopped while its trap is served).
unsafe impl Sync for Device {}

static DEVICE: Device = Device(UnsafeCell::new([0; DEVICE_BYTES]));

struct DeviceRef<'a>(&'a mut [u8; DEVICE_BYTES]);

impl MmioHandler for DeviceRef<'_> {
    fn read(&mut self, ipa: u64, size: AccessSize) -> u64 {
        let off = (ipa - TOY_WINDOW) as usize;
        let mut v = 0u64;
        for i in (0..usize::from(size.bytes())).rev() {
            v = (v << 8) | u64::from(self.0.get(off + i).copied().unwrap_or(0xff));
        }
        v
    }

    fn write(&mut self, ipa: u64, size: AccessSize, value: u64) {
        let off = (ipa - TOY_WINDOW) as usize;
        for i in 0..usize::from(size.bytes()) {
            if let Some(b) = self.0.get_mut(off + i) {
                *b = (value >> (8 * i)) as u8;
            }
        }
    }
}

impl VcpuRegs for ExceptionFrame {
    fn get(&self, r: u8) -> u64 {
        self.x.as_slice().get(usize::from(r)).copied().unwrap_or(0)
    }
    fn set(&mut self, r: u8, v: u64) {
        if let Some(x) = self.x.as_mut_slice().get_mut(usize::from(r)) {
            *x = v;
        }
    }
}

/// Called at EL2 by `_start` before dropping to EL1: identity stage-2 map of
/// the low 4 GiB (device memory below 1 GiB except the 2 MiB
/// [`STAGE2_HOLE`], RAM at 1 GiB as Normal), the virtual CPU identity, timer
/// and GICv3 system-register access for EL1, then HCR_EL2.{RW, VM}.
#[no_mangle]
extern "C" fn el2_setup() {
    let l2 = S2_L2.0.get();
    let l1 = S2_L1.0.get();
    // SAFETY: single-threaded boot at EL2, nothing else references the
    // tables yet.
    unsafe {
        for (i, e) in (*l2).iter_mut().enumerate() {
            let ipa = (i as u64) << 21;
            *e = if ipa == STAGE2_HOLE {
                0
            } else {
                ipa | S2_AF | S2_RW | S2_DEVICE | S2_BLOCK
            };
        }
        (*l1)[0] = (l2 as u64) | S2_TABLE;
        (*l1)[1] = 0x4000_0000 | S2_AF | S2_RW | S2_NORMAL | S2_BLOCK;
        (*l1)[2] = 0x8000_0000 | S2_AF | S2_RW | S2_DEVICE | S2_BLOCK;
        (*l1)[3] = 0xc000_0000 | S2_AF | S2_RW | S2_DEVICE | S2_BLOCK;
    }
    // VTCR_EL2: T0SZ = 32 (4 GiB IPA), SL0 = 1 (start at level 1), inner and
    // outer write-back, inner shareable, 4 KiB granule, PS = 32 bits, RES1
    // bit 31.
    let vtcr: u64 = 32 | (1 << 6) | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 31);
    let pfr0: u64;
    // SAFETY: reading an ID register.
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack)) };
    // SAFETY: EL2 configuration before any EL1 code runs; the tables are
    // complete (the dsb makes them visible to the walker).
    unsafe {
        asm!(
            "dsb sy",
            "msr vtcr_el2, {vtcr}",
            "msr vttbr_el2, {l1}",
            "mrs {t}, midr_el1",
            "msr vpidr_el2, {t}",
            "mrs {t}, mpidr_el1",
            "msr vmpidr_el2, {t}",
            "mov {t}, #3",
            "msr cnthctl_el2, {t}",
            "msr cntvoff_el2, xzr",
            "isb",
            "tlbi vmalls12e1",
            "dsb sy",
            "isb",
            vtcr = in(reg) vtcr,
            l1 = in(reg) l1 as u64,
            t = out(reg) _,
            options(nostack)
        );
        if (pfr0 >> 24) & 0xf != 0 {
            // ICC_SRE_EL2 (S3_4_C12_C9_5): SRE | Enable, so EL1 may use the
            // GICv3 system registers.
            asm!("mov {t}, #9", "msr S3_4_C12_C9_5, {t}", "isb", t = out(reg) _, options(nostack));
        }
        // HCR_EL2: RW (EL1 is AArch64) | VM (stage 2 on). IMO/FMO stay 0:
        // physical interrupts go to EL1.
        asm!("msr hcr_el2, {h}", "isb", h = in(reg) (1u64 << 31) | 1, options(nostack));
    }
    ACTIVE.store(true, Ordering::SeqCst);
}

fn error_code(e: AbortError) -> u32 {
    match e {
        AbortError::NotDataAbort(_) => 1,
        AbortError::NoValidSyndrome => 2,
        AbortError::CacheMaintenance => 3,
        AbortError::StageOneWalk => 4,
        AbortError::ShortInstruction => 5,
    }
}

/// Error code stored in [`LAST_ERROR`] for [`AbortError::NoValidSyndrome`].
pub const ERR_NO_VALID_SYNDROME: u32 = 2;

/// Exception class of an HVC instruction executed in AArch64 state.
const EC_HVC64: u8 = 0x16;

/// EL2 exception handler: serves hypercalls and data aborts from EL1 in the
/// trapping hole; anything else is fatal.
#[no_mangle]
extern "C" fn el2_exception_entry(frame: &mut ExceptionFrame, kind: u64) {
    let (esr, far, hpfar): (u64, u64, u64);
    // SAFETY: reading the EL2 syndrome registers has no side effects.
    unsafe {
        asm!(
            "mrs {}, esr_el2", "mrs {}, far_el2", "mrs {}, hpfar_el2",
            out(reg) esr, out(reg) far, out(reg) hpfar, options(nomem, nostack)
        )
    };
    let ec = exception_class(esr);
    let ipa = ipa_from_hpfar_far(hpfar, far);
    let toy = TOY_WINDOW..TOY_WINDOW + DEVICE_BYTES as u64;
    // The rest of the hole belongs to the virtio device: accesses outside
    // its window are refused by the library (and answered with an abort).
    let hole = STAGE2_HOLE..STAGE2_HOLE + (2 << 20);
    let virtio = hole.contains(&ipa) && !toy.contains(&ipa);
    if kind == 8 && ec == EC_HVC64 {
        // The preferred return address of an HVC is the next instruction.
        HVCS.fetch_add(1, Ordering::Relaxed);
        frame.x[0] = heap::device_context(|| hyp::host_op(frame.x[0], frame.x[1]));
    } else if kind == 8 && ec == EC_DATA_ABORT_LOWER && virtio {
        match heap::device_context(|| hyp::serve_abort(esr, ipa, frame)) {
            Ok(step) => {
                VIRTIO_TRAPS.fetch_add(1, Ordering::Relaxed);
                frame.elr += step;
            }
            Err(_) => {
                VIRTIO_REFUSED.fetch_add(1, Ordering::SeqCst);
                inject_external_abort(frame, esr, far);
            }
        }
    } else if kind == 8 && ec == EC_DATA_ABORT_LOWER && toy.contains(&ipa) {
        serve_toy(frame, esr, ipa);
    } else {
        hprintln!("unexpected EL2 exception: vector {kind}");
        hprintln!(
            "  ESR_EL2={esr:#018x} FAR_EL2={far:#x} HPFAR_EL2={hpfar:#x} IPA={ipa:#x} ELR_EL2={:#x}",
            frame.elr
        );
        semihosting::exit(EXIT_EXCEPTION);
    }
}

/// Answers a refused guest access the way hardware answers an access
/// nothing responds to: a synchronous external abort taken to EL1 at the
/// faulting instruction (ESR_EL1: EC 0x25 from EL1, or 0x24 from EL0; IL;
/// ISV = 0; WnR copied; DFSC 0x10), with FAR_EL1 the faulting address, and
/// EL1's exception entry state (ELR_EL1, SPSR_EL1, PC = VBAR_EL1 + the
/// synchronous vector for the guest's mode, PSTATE = EL1h, DAIF masked).
fn inject_external_abort(frame: &mut ExceptionFrame, esr: u64, far: u64) {
    let mode = frame.spsr & 0xf;
    let (ec, vector) = match mode {
        0b0101 => (0x25u64, 0x200u64), // EL1h: current EL with SP_EL1
        0b0100 => (0x25, 0x000),       // EL1t: current EL with SP_EL0
        _ => (0x24, 0x400),            // EL0: lower EL, AArch64
    };
    let esr_el1 = (ec << 26) | (1 << 25) | (esr & (1 << 6)) | 0x10;
    let vbar: u64;
    // SAFETY: EL2 writes the EL1 exception registers of the stopped guest
    // (HCR_EL2.E2H = 0, so these name EL1's registers) and reads VBAR_EL1;
    // no memory is accessed.
    unsafe {
        asm!(
            "msr esr_el1, {esr}",
            "msr far_el1, {far}",
            "msr elr_el1, {elr}",
            "msr spsr_el1, {spsr}",
            "mrs {vbar}, vbar_el1",
            esr = in(reg) esr_el1,
            far = in(reg) far,
            elr = in(reg) frame.elr,
            spsr = in(reg) frame.spsr,
            vbar = out(reg) vbar,
            options(nomem, nostack)
        )
    };
    frame.elr = vbar + vector;
    frame.spsr = 0x3c5;
}

/// Serves a toy-device access (the golden-syndrome tests).
fn serve_toy(frame: &mut ExceptionFrame, esr: u64, ipa: u64) {
    TRAPS.fetch_add(1, Ordering::SeqCst);
    LAST_ESR.store(esr, Ordering::SeqCst);
    LAST_IPA.store(ipa, Ordering::SeqCst);
    // SAFETY: see `Device`'s Sync impl: one trap at a time.
    let mut dev = DeviceRef(unsafe { &mut *DEVICE.0.get() });
    match emulate_data_abort(esr, ipa, frame, &mut dev) {
        Ok(step) => {
            LAST_ERROR.store(0, Ordering::SeqCst);
            frame.elr += step;
        }
        Err(e) => {
            // A real hypervisor injects an abort into the guest; the image
            // records the refusal and skips the instruction so the test can
            // check it.
            LAST_ERROR.store(error_code(e), Ordering::SeqCst);
            frame.elr += 4;
        }
    }
}
