//! The vCPU exit handler: a data abort inside the device's MMIO window is
//! decoded with `virtnet-aarch64`, served by an [`MmioBus`] (the device's
//! virtio-mmio transport), the loaded value written to the destination
//! register and the PC advanced by 4. Everything else goes back to the
//! embedder untouched.
//!
//! Order of the decisions (specs/11-hvf.md §3):
//! 1. `reason` is not `HV_EXIT_REASON_EXCEPTION` → [`ExitAction::NotMine`].
//! 2. The syndrome's exception class is not a data abort (0x24, 0x25) →
//!    `NotMine` (HVC, system-register traps, WFI, ... are the embedder's).
//! 3. The faulting IPA (`physical_address`) is outside
//!    `[base, base + WINDOW_SIZE)` → `NotMine` (another device's abort).
//! 4. Inside the window: the syndrome is decoded; a syndrome the decoder
//!    refuses (ISV = 0, CM, S1PTW, IL = 0) is an [`ExitError::Abort`], and
//!    an access that starts inside the window but runs past its end is an
//!    [`ExitError::CrossesWindow`]. Neither touches a register or the device.
//! 5. The access is served and the PC advanced: [`ExitAction::Handled`].

use core::fmt;

use virtnet::device::Progress;
use virtnet::mmio::WINDOW_SIZE;
use virtnet_aarch64::{
    decode_data_abort, exception_class, AbortError, AccessSize, MmioAccess, EC_DATA_ABORT_LOWER,
    EC_DATA_ABORT_SAME, INSTRUCTION_LEN,
};

use crate::ffi;
use crate::vcpu::Vcpu;

/// Why a vCPU stopped, from `hv_vcpu_exit_t.reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitReason {
    /// `HV_EXIT_REASON_CANCELED`.
    Canceled,
    /// `HV_EXIT_REASON_EXCEPTION`: the syndrome and addresses are valid.
    Exception,
    /// `HV_EXIT_REASON_VTIMER_ACTIVATED`.
    VtimerActivated,
    /// `HV_EXIT_REASON_UNKNOWN` or a value this crate does not know.
    Other(u32),
}

impl From<u32> for ExitReason {
    fn from(raw: u32) -> Self {
        match raw {
            ffi::HV_EXIT_REASON_CANCELED => ExitReason::Canceled,
            ffi::HV_EXIT_REASON_EXCEPTION => ExitReason::Exception,
            ffi::HV_EXIT_REASON_VTIMER_ACTIVATED => ExitReason::VtimerActivated,
            other => ExitReason::Other(other),
        }
    }
}

/// A vCPU exit, copied out of the framework's `hv_vcpu_exit_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuExit {
    /// Why the vCPU stopped.
    pub reason: ExitReason,
    /// ESR_EL2 (`exception.syndrome`); meaningful for
    /// [`ExitReason::Exception`].
    pub syndrome: u64,
    /// FAR_EL2, the faulting guest-virtual address
    /// (`exception.virtual_address`).
    pub virtual_address: u64,
    /// The faulting guest-physical address (`exception.physical_address`).
    pub physical_address: u64,
}

impl VcpuExit {
    /// An exception exit with these values (tests, and embedders that get
    /// the syndrome elsewhere).
    pub const fn exception(syndrome: u64, virtual_address: u64, physical_address: u64) -> Self {
        VcpuExit {
            reason: ExitReason::Exception,
            syndrome,
            virtual_address,
            physical_address,
        }
    }
}

impl From<&ffi::hv_vcpu_exit_t> for VcpuExit {
    fn from(raw: &ffi::hv_vcpu_exit_t) -> Self {
        VcpuExit {
            reason: ExitReason::from(raw.reason),
            syndrome: raw.exception.syndrome,
            virtual_address: raw.exception.virtual_address,
            physical_address: raw.exception.physical_address,
        }
    }
}

/// The guest-physical window `[base, base + WINDOW_SIZE)` of one
/// virtio-mmio device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MmioWindow {
    base: u64,
}

impl MmioWindow {
    /// The window at `base`; `None` if it would wrap the address space.
    pub const fn new(base: u64) -> Option<Self> {
        match base.checked_add(WINDOW_SIZE) {
            Some(_) => Some(MmioWindow { base }),
            None => None,
        }
    }

    /// First guest-physical address of the window.
    pub const fn base(&self) -> u64 {
        self.base
    }

    /// The offset of `ipa` in the window, if it lies inside.
    pub const fn offset_of(&self, ipa: u64) -> Option<u64> {
        match ipa.checked_sub(self.base) {
            Some(off) if off < WINDOW_SIZE => Some(off),
            _ => None,
        }
    }
}

/// What serves the accesses of one MMIO window: offsets are relative to the
/// window's base. Implemented for the core's transport by
/// [`crate::device::TransportBus`]; tests implement it with recorders.
pub trait MmioBus {
    /// A load of `size` bytes at `offset`; the value is in the low bytes
    /// (bits above the size are ignored).
    fn read(&mut self, offset: u64, size: AccessSize) -> u64;
    /// A store of `size` bytes at `offset`; `value` is masked to the size.
    /// Returns what a queue notification processed.
    fn write(&mut self, offset: u64, size: AccessSize, value: u64) -> Progress;
}

impl<B: MmioBus + ?Sized> MmioBus for &mut B {
    fn read(&mut self, offset: u64, size: AccessSize) -> u64 {
        (**self).read(offset, size)
    }
    fn write(&mut self, offset: u64, size: AccessSize, value: u64) -> Progress {
        (**self).write(offset, size, value)
    }
}

/// What [`handle_exit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// The exit was an access to this device's window: served, register
    /// written (loads), PC advanced by 4. Resume the vCPU.
    Handled {
        /// The decoded access.
        access: MmioAccess,
        /// What a QueueNotify processed; with `more` set, the embedder should
        /// call the transport's `poll` again (from any thread holding the
        /// device) until it is clear.
        progress: Progress,
    },
    /// Not this device's exit: nothing was read or written; the embedder
    /// handles it (another device, a hypercall, a timer, ...).
    NotMine,
}

/// An exit inside the device's window that cannot be served. Nothing was
/// touched except as stated on [`ExitError::Vcpu`]. The embedder decides
/// what the guest sees (typically an injected synchronous external abort,
/// or stopping the VM); this crate never guesses an emulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitError<E> {
    /// The syndrome does not describe the access (ISV = 0, e.g. `ldp`/`stp`,
    /// writeback, SIMD registers) or is not an emulatable data access.
    Abort {
        /// The faulting IPA.
        ipa: u64,
        /// The decoder's reason.
        error: AbortError,
    },
    /// The access starts inside the window but ends past it.
    CrossesWindow {
        /// The faulting IPA.
        ipa: u64,
        /// Its size in bytes.
        size: u8,
    },
    /// A register could not be read or written. If it was the destination
    /// register or the PC, the device already performed the access (a load
    /// may have had side effects, a store has happened): treat as fatal.
    Vcpu(E),
}

impl<E: fmt::Display> fmt::Display for ExitError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitError::Abort { ipa, error } => {
                write!(f, "MMIO abort at {ipa:#x} cannot be emulated: {error}")
            }
            ExitError::CrossesWindow { ipa, size } => {
                write!(
                    f,
                    "{size}-byte MMIO access at {ipa:#x} crosses the window end"
                )
            }
            ExitError::Vcpu(e) => write!(f, "vCPU register access failed: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for ExitError<E> {}

/// Handles one vCPU exit for the device whose window is `window` (see the
/// module docs for the order of decisions).
///
/// # Errors
/// [`ExitError`] for an exit inside the window that cannot be served.
pub fn handle_exit<V, B>(
    window: MmioWindow,
    exit: &VcpuExit,
    vcpu: &mut V,
    bus: &mut B,
) -> Result<ExitAction, ExitError<V::Error>>
where
    V: Vcpu + ?Sized,
    B: MmioBus + ?Sized,
{
    if exit.reason != ExitReason::Exception {
        return Ok(ExitAction::NotMine);
    }
    let ec = exception_class(exit.syndrome);
    if ec != EC_DATA_ABORT_LOWER && ec != EC_DATA_ABORT_SAME {
        return Ok(ExitAction::NotMine);
    }
    let ipa = exit.physical_address;
    let Some(offset) = window.offset_of(ipa) else {
        return Ok(ExitAction::NotMine);
    };
    let access =
        decode_data_abort(exit.syndrome, ipa).map_err(|error| ExitError::Abort { ipa, error })?;
    let size = access.size.bytes();
    if offset.saturating_add(u64::from(size)) > WINDOW_SIZE {
        return Err(ExitError::CrossesWindow { ipa, size });
    }
    let progress = if access.write {
        let value = match access.reg.index() {
            Some(n) => access.write_value(vcpu.x(n).map_err(ExitError::Vcpu)?),
            None => 0, // XZR/WZR stores 0.
        };
        bus.write(offset, access.size, value)
    } else {
        let raw = bus.read(offset, access.size);
        if let Some((n, value)) = access.load_result(raw) {
            vcpu.set_x(n, value).map_err(ExitError::Vcpu)?;
        }
        Progress::default()
    };
    let pc = vcpu.pc().map_err(ExitError::Vcpu)?;
    vcpu.set_pc(pc.wrapping_add(INSTRUCTION_LEN))
        .map_err(ExitError::Vcpu)?;
    Ok(ExitAction::Handled { access, progress })
}
