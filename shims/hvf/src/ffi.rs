//! Hand-written declarations of the parts of Hypervisor.framework
//! (`<Hypervisor/Hypervisor.h>`, Apple silicon) the shim uses.
//!
//! The types and constants are plain data and exist on every target, so the
//! layout and the conversions built on them are tested on the Linux host; the
//! `extern` block that links the framework only exists on macOS.
//!
//! What the shim needs, and nothing more:
//!
//! | C API | header | used for |
//! | --- | --- | --- |
//! | `hv_vcpu_exit_t`, `hv_vcpu_exit_exception_t` | `hv_vcpu_types.h` | the exit a vCPU reports (`reason`, `exception.syndrome` = ESR_EL2, `virtual_address` = FAR_EL2, `physical_address` = the faulting IPA) |
//! | `hv_vcpu_get_reg`, `hv_vcpu_set_reg` | `hv_vcpu.h` | X0..X30 and PC of a stopped vCPU (`vcpu::HvfVcpu`, macOS) |
//! | `hv_vcpu_run` | `hv_vcpu.h` | only the embedder's run loop (README example) |
//! | `hv_gic_set_spi` | `hv_gic.h`, macOS 15.0+ | the device's interrupt line through the in-kernel GIC (`irq::HvfGic`, macOS) |
//!
//! `hv_gic_set_spi` is deliberately *not* declared here: a direct reference
//! would make any program using the shim fail to load on macOS 14 and older
//! (the symbol is missing from the framework there, and stable Rust cannot
//! weak-link). `irq::HvfGic::new` (macOS) looks it up at run time instead.
//!
//! Guest memory is mapped by the embedder with `hv_vm_map(host, ipa, len,
//! flags)`; the shim never maps memory itself. It only needs the same
//! `(ipa, host, len)` triples ([`crate::memory::Mapping`]).
//!
//! Reference: Apple Developer Documentation, "Hypervisor" (Apple silicon
//! section): `hv_vcpu_exit_t`, `hv_exit_reason_t`, `hv_reg_t`,
//! `hv_return_t`, `hv_gic_set_spi(_:_:)`.
#![allow(non_camel_case_types)]

use core::fmt;

/// `hv_vcpu_t`: a vCPU handle on Apple silicon (`uint64_t`).
pub type hv_vcpu_t = u64;
/// `hv_reg_t`: a general-purpose register selector (C enum, `uint32_t`).
pub type hv_reg_t = u32;
/// `hv_return_t`: a `mach_error_t` (`int`); 0 is success.
pub type hv_return_t = i32;
/// `hv_exit_reason_t` (C enum, `uint32_t`).
pub type hv_exit_reason_t = u32;
/// `hv_ipa_t`: an intermediate physical (guest-physical) address.
pub type hv_ipa_t = u64;

/// `HV_REG_X0`; X*n* is `HV_REG_X0 + n` for `n` in `0..=30`
/// (`HV_REG_X29` = `HV_REG_FP`, `HV_REG_X30` = `HV_REG_LR`).
pub const HV_REG_X0: hv_reg_t = 0;
/// `HV_REG_PC`, the register after X30 in `hv_reg_t`.
pub const HV_REG_PC: hv_reg_t = 31;

/// `HV_EXIT_REASON_CANCELED`: `hv_vcpus_exit` asked the vCPU to stop.
pub const HV_EXIT_REASON_CANCELED: hv_exit_reason_t = 0;
/// `HV_EXIT_REASON_EXCEPTION`: the guest took an exception to the host;
/// `exception` is valid.
pub const HV_EXIT_REASON_EXCEPTION: hv_exit_reason_t = 1;
/// `HV_EXIT_REASON_VTIMER_ACTIVATED`: the virtual timer fired.
pub const HV_EXIT_REASON_VTIMER_ACTIVATED: hv_exit_reason_t = 2;
/// `HV_EXIT_REASON_UNKNOWN`.
pub const HV_EXIT_REASON_UNKNOWN: hv_exit_reason_t = 3;

/// `HV_SUCCESS`.
pub const HV_SUCCESS: hv_return_t = 0;
// The error codes are `0xfae94xxx` (err_local | err_local_diag): written as
// u32 and reinterpreted, as the C header does.
/// `HV_ERROR`.
pub const HV_ERROR: hv_return_t = 0xfae9_4001_u32 as i32;
/// `HV_BUSY`.
pub const HV_BUSY: hv_return_t = 0xfae9_4002_u32 as i32;
/// `HV_BAD_ARGUMENT`.
pub const HV_BAD_ARGUMENT: hv_return_t = 0xfae9_4003_u32 as i32;
/// `HV_ILLEGAL_GUEST_STATE`.
pub const HV_ILLEGAL_GUEST_STATE: hv_return_t = 0xfae9_4004_u32 as i32;
/// `HV_NO_RESOURCES`.
pub const HV_NO_RESOURCES: hv_return_t = 0xfae9_4005_u32 as i32;
/// `HV_NO_DEVICE`.
pub const HV_NO_DEVICE: hv_return_t = 0xfae9_4006_u32 as i32;
/// `HV_DENIED`.
pub const HV_DENIED: hv_return_t = 0xfae9_4007_u32 as i32;
/// `HV_UNSUPPORTED`.
pub const HV_UNSUPPORTED: hv_return_t = 0xfae9_400f_u32 as i32;

/// `hv_vcpu_exit_exception_t`: details of an exception exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hv_vcpu_exit_exception_t {
    /// ESR_EL2 of the exception (`hv_exception_syndrome_t`).
    pub syndrome: u64,
    /// FAR_EL2: the faulting guest-virtual address
    /// (`hv_exception_address_t`).
    pub virtual_address: u64,
    /// The faulting intermediate physical address (`hv_ipa_t`): for a
    /// stage-2 data abort, the guest-physical address accessed.
    pub physical_address: hv_ipa_t,
}

/// `hv_vcpu_exit_t`: what `hv_vcpu_create` hands out a pointer to and every
/// `hv_vcpu_run` rewrites. 32 bytes: `reason`, 4 bytes of padding, then
/// `exception` at offset 8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hv_vcpu_exit_t {
    /// Why the vCPU stopped (`HV_EXIT_REASON_*`).
    pub reason: hv_exit_reason_t,
    /// Valid when `reason == HV_EXIT_REASON_EXCEPTION`.
    pub exception: hv_vcpu_exit_exception_t,
}

/// A failed Hypervisor.framework call: its `hv_return_t`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HvError(pub hv_return_t);

impl HvError {
    /// `Ok(())` for `HV_SUCCESS`, the error otherwise.
    pub fn check(ret: hv_return_t) -> Result<(), HvError> {
        if ret == HV_SUCCESS {
            Ok(())
        } else {
            Err(HvError(ret))
        }
    }

    /// The C name of the code, if it is one of the documented ones.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            HV_ERROR => "HV_ERROR",
            HV_BUSY => "HV_BUSY",
            HV_BAD_ARGUMENT => "HV_BAD_ARGUMENT",
            HV_ILLEGAL_GUEST_STATE => "HV_ILLEGAL_GUEST_STATE",
            HV_NO_RESOURCES => "HV_NO_RESOURCES",
            HV_NO_DEVICE => "HV_NO_DEVICE",
            HV_DENIED => "HV_DENIED",
            HV_UNSUPPORTED => "HV_UNSUPPORTED",
            _ => return None,
        })
    }
}

impl fmt::Debug for HvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for HvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#010x})", self.0 as u32),
            None => write!(f, "hv_return_t {:#010x}", self.0 as u32),
        }
    }
}

impl std::error::Error for HvError {}

#[cfg(target_os = "macos")]
#[link(name = "Hypervisor", kind = "framework")]
extern "C" {
    /// `hv_return_t hv_vcpu_run(hv_vcpu_t vcpu)`: runs the vCPU until an
    /// exit; the exit is then in the `hv_vcpu_exit_t` that `hv_vcpu_create`
    /// returned. Must be called on the thread that created the vCPU.
    pub fn hv_vcpu_run(vcpu: hv_vcpu_t) -> hv_return_t;

    /// `hv_return_t hv_vcpu_get_reg(hv_vcpu_t vcpu, hv_reg_t reg, uint64_t
    /// *value)`: reads a register of a stopped vCPU. Must be called on the
    /// thread that created the vCPU.
    pub fn hv_vcpu_get_reg(vcpu: hv_vcpu_t, reg: hv_reg_t, value: *mut u64) -> hv_return_t;

    /// `hv_return_t hv_vcpu_set_reg(hv_vcpu_t vcpu, hv_reg_t reg, uint64_t
    /// value)`: writes a register of a stopped vCPU. Must be called on the
    /// thread that created the vCPU.
    pub fn hv_vcpu_set_reg(vcpu: hv_vcpu_t, reg: hv_reg_t, value: u64) -> hv_return_t;
}

/// The C signature of `hv_gic_set_spi` (macOS 15.0+):
/// `hv_return_t hv_gic_set_spi(uint32_t intid, bool level)`.
pub type HvGicSetSpiFn = unsafe extern "C" fn(intid: u32, level: bool) -> hv_return_t;

/// The symbol name looked up for [`HvGicSetSpiFn`].
pub const HV_GIC_SET_SPI_SYMBOL: &core::ffi::CStr = c"hv_gic_set_spi";
