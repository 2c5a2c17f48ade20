//! Serving a trapped guest access to the virtio-mmio window: the EL2 (or
//! Hypervisor.framework) side of the device's register block.
//!
//! A guest load or store to the device's window, left unmapped at stage 2,
//! traps as a Data Abort. [`serve_data_abort`] decodes the syndrome with the
//! shared decoder of `virtnet-aarch64` (never guessing: an access without a
//! valid syndrome is refused), checks that the access lies inside the window,
//! performs it on the core's [`MmioTransport`] (a store may be a
//! QueueNotify, which processes the queue and may raise the device's
//! interrupt on `line`), writes a load's value back into the trapped
//! register (size-masked, sign-extended per SSE/SF, XZR discarded) and
//! returns the PC step. The caller adds [`Served::pc_step`] to ELR_EL2 and
//! resumes the guest; on an error it must inject an abort into the guest
//! instead (specs/06-baremetal.md §1, §4).

use core::fmt;

use virtnet::device::Progress;
use virtnet::mem::GuestMemory;
use virtnet::mmio::{InterruptLine, MmioQueues, MmioTransport, WINDOW_SIZE};
use virtnet_aarch64::{
    complete_mmio, decode_data_abort, AbortError, AccessSize, MmioAccess, MmioHandler, VcpuRegs,
};

/// Why a trapped access was not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrapError {
    /// The syndrome does not describe an emulatable access (see
    /// [`AbortError`]).
    Abort(AbortError),
    /// The access does not lie entirely inside the window
    /// `[base, base + WINDOW_SIZE)`: another device's, or a stray access.
    OutsideWindow {
        /// The faulting IPA.
        ipa: u64,
        /// The access size in bytes.
        size: u8,
    },
}

impl fmt::Display for TrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Abort(e) => write!(f, "{e}"),
            Self::OutsideWindow { ipa, size } => {
                write!(
                    f,
                    "{size}-byte access at {ipa:#x} is outside the virtio-mmio window"
                )
            }
        }
    }
}

impl core::error::Error for TrapError {}

impl From<AbortError> for TrapError {
    fn from(e: AbortError) -> Self {
        Self::Abort(e)
    }
}

/// A served access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// What to add to the guest's PC (ELR_EL2): the instruction length.
    pub pc_step: u64,
    /// The decoded access.
    pub access: MmioAccess,
    /// What a QueueNotify store processed (`more`: the budget ran out, call
    /// [`MmioTransport::poll`] later); default for any other access.
    pub progress: Progress,
}

/// The offset of an access of `size` bytes at `ipa` in the window at `base`,
/// if the whole access lies inside it.
#[must_use]
pub fn window_offset(base: u64, ipa: u64, size: AccessSize) -> Option<u64> {
    let off = ipa.checked_sub(base)?;
    let end = off.checked_add(u64::from(size.bytes()))?;
    (end <= WINDOW_SIZE).then_some(off)
}

/// The transport as an [`MmioHandler`] at `base`.
struct Bus<'a, D, M: ?Sized, L: ?Sized> {
    base: u64,
    transport: &'a mut MmioTransport<D>,
    mem: &'a M,
    line: &'a mut L,
    progress: Progress,
}

impl<D, M, L> MmioHandler for Bus<'_, D, M, L>
where
    D: MmioQueues<M>,
    M: GuestMemory + ?Sized,
    L: InterruptLine + ?Sized,
{
    fn read(&mut self, ipa: u64, size: AccessSize) -> u64 {
        self.transport
            .read(ipa.wrapping_sub(self.base), usize::from(size.bytes()))
    }

    fn write(&mut self, ipa: u64, size: AccessSize, value: u64) {
        self.progress = self.transport.write(
            ipa.wrapping_sub(self.base),
            usize::from(size.bytes()),
            value,
            self.mem,
            self.line,
        );
    }
}

/// Serves one trapped access to the virtio-mmio window at `base` (its
/// guest-physical address; the window is [`WINDOW_SIZE`] bytes).
///
/// `esr` is the Data Abort syndrome (ESR_EL2, or Hypervisor.framework's
/// exception syndrome), `ipa` the faulting guest-physical address (at EL2
/// `virtnet_aarch64::ipa_from_hpfar_far`), `regs` the trapped vCPU's X0-X30.
/// On success the load's result is in its destination register and the
/// caller must add [`Served::pc_step`] to the guest's PC.
///
/// # Errors
/// [`TrapError::Abort`] when the syndrome cannot be emulated (ISV = 0 and
/// the other refusals of `decode_data_abort`), [`TrapError::OutsideWindow`]
/// when the access is not entirely inside the window. In both cases neither
/// the registers nor the device were touched; the caller injects an abort.
pub fn serve_data_abort<D, M, L, R>(
    base: u64,
    esr: u64,
    ipa: u64,
    regs: &mut R,
    transport: &mut MmioTransport<D>,
    mem: &M,
    line: &mut L,
) -> Result<Served, TrapError>
where
    D: MmioQueues<M>,
    M: GuestMemory + ?Sized,
    L: InterruptLine + ?Sized,
    R: VcpuRegs + ?Sized,
{
    let access = decode_data_abort(esr, ipa)?;
    if window_offset(base, ipa, access.size).is_none() {
        return Err(TrapError::OutsideWindow {
            ipa,
            size: access.size.bytes(),
        });
    }
    let mut bus = Bus {
        base,
        transport,
        mem,
        line,
        progress: Progress::default(),
    };
    let pc_step = complete_mmio(&access, regs, &mut bus);
    Ok(Served {
        pc_step,
        access,
        progress: bus.progress,
    })
}

#[cfg(test)]
mod tests;
