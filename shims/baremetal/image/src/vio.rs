//! The driver side's ways to the device: register accesses and host-control
//! calls, over the path of this run.
//!
//! * Trapped (the image was started at EL2): a real `ldr`/`str` to the
//!   virtio-mmio window at `hyp::VIRTIO_BASE`, which traps to EL2, and
//!   `hvc #0` for host control.
//! * Direct (EL1 only): calls into `hyp` inside a critical section and
//!   `heap::device_context`.

use core::arch::asm;

use crate::{el2, heap, hyp};

/// Whether this run uses the trapped (EL2) path.
pub fn trapped() -> bool {
    el2::active()
}

/// A 32-bit register load at `offset` in the virtio-mmio window.
pub fn read32(offset: u64) -> u32 {
    if trapped() {
        let v: u32;
        // SAFETY: a single 32-bit load from the virtio-mmio window, which
        // stage 2 leaves unmapped: it traps to EL2, which serves it and
        // writes the result to the destination register. No memory is
        // accessed.
        unsafe {
            asm!("ldr {v:w}, [{a}]", a = in(reg) hyp::VIRTIO_BASE + offset, v = out(reg) v, options(nostack))
        };
        v
    } else {
        critical_section::with(|_| heap::device_context(|| hyp::mmio_read(offset, 4) as u32))
    }
}

/// A 32-bit register store at `offset` in the virtio-mmio window.
pub fn write32(offset: u64, value: u32) {
    if trapped() {
        // SAFETY: a single 32-bit store to the trapping window (see
        // `read32`); the device may then read or write guest RAM, which the
        // asm's memory clobber (no `nomem`) accounts for.
        unsafe {
            asm!("str {v:w}, [{a}]", a = in(reg) hyp::VIRTIO_BASE + offset, v = in(reg) value, options(nostack))
        };
    } else {
        critical_section::with(|_| {
            heap::device_context(|| hyp::mmio_write(offset, 4, u64::from(value)))
        });
    }
}

/// A byte load from the device's configuration space (offset from the
/// window's start).
pub fn read8(offset: u64) -> u8 {
    if trapped() {
        let v: u32;
        // SAFETY: as in `read32`, a single byte load.
        unsafe {
            asm!("ldrb {v:w}, [{a}]", a = in(reg) hyp::VIRTIO_BASE + offset, v = out(reg) v, options(nostack))
        };
        v as u8
    } else {
        critical_section::with(|_| heap::device_context(|| hyp::mmio_read(offset, 1) as u8))
    }
}

/// Host-control operation `op` (see `hyp::op`).
pub fn host(op: u64, arg: u64) -> u64 {
    if trapped() {
        let mut x0 = op;
        // SAFETY: a hypercall to the image's own EL2 handler, which reads x0
        // and x1 and returns its result in x0; the device may write guest
        // RAM meanwhile (memory clobber).
        unsafe { asm!("hvc #0", inout("x0") x0, in("x1") arg, options(nostack)) };
        x0
    } else {
        critical_section::with(|_| heap::device_context(|| hyp::host_op(op, arg)))
    }
}

/// Reads device counter `which`.
pub fn stat(which: hyp::Stat) -> u64 {
    host(hyp::op::STAT, which as u64)
}
