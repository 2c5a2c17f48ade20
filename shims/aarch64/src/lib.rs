//! Decoding of an AArch64 data-abort syndrome into an MMIO access.
//!
//! A guest load or store to an address that is not backed by memory traps to
//! the hypervisor as a *Data Abort* exception. When the syndrome is valid
//! (ISV = 1), the exception syndrome register describes the access completely:
//! its size, direction, register and sign extension. That lets a hypervisor
//! emulate the access (call the device's MMIO handler, write the loaded value
//! back into the guest register) without decoding the instruction from guest
//! memory. This crate turns the syndrome into an [`MmioAccess`] and performs
//! the register side of the emulation.
//!
//! It is shared by the bare-metal shim (`virtnet-baremetal`, running at EL2
//! and reading `ESR_EL2`) and the macOS Hypervisor.framework shim, whose
//! `HV_EXIT_REASON_EXCEPTION` exit reports the same `ESR_EL2` value.
//!
//! # Reference
//! Arm Architecture Reference Manual for A-profile architecture (DDI 0487),
//! register description of `ESR_EL2` ("Exception Syndrome Register (EL2)"),
//! field `EC` (exception classes `0b100100` "Data Abort from a lower Exception
//! level" and `0b100101` "Data Abort taken without a change in Exception
//! level"), field `IL`, and the subsection "ISS encoding for an exception from
//! a Data Abort" (fields ISV, SAS, SSE, SRT, SF, AR, CM, S1PTW, WnR, DFSC).
//! The faulting intermediate physical address (IPA) comes from elsewhere: at
//! EL2 from `HPFAR_EL2.FIPA` (`(HPFAR_EL2 & !0xf) << 8`) combined with the low
//! 12 bits of `FAR_EL2` (see [`ipa_from_hpfar_far`]); under Hypervisor.framework
//! from the exit's `physical_address`.
//!
//! # Contract
//! * [`decode_data_abort`] never guesses: a syndrome without a valid
//!   instruction syndrome (ISV = 0), a cache-maintenance abort, an abort on a
//!   stage-1 page-table walk, or a 16-bit instruction is reported as an
//!   [`AbortError`], never emulated.
//! * No function here panics, for any input.
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use core::fmt;

/// Exception class (ESR_ELx.EC) of a Data Abort taken from a lower Exception
/// level, e.g. a guest at EL1 trapping to EL2.
pub const EC_DATA_ABORT_LOWER: u8 = 0x24;

/// Exception class (ESR_ELx.EC) of a Data Abort taken without a change in
/// Exception level.
pub const EC_DATA_ABORT_SAME: u8 = 0x25;

/// Length in bytes of every AArch64 instruction: the value to add to the
/// guest's PC (ELR_EL2) once an access has been emulated.
pub const INSTRUCTION_LEN: u64 = 4;

/// ESR_ELx bit positions and masks (Arm ARM, ESR_EL2 and "ISS encoding for an
/// exception from a Data Abort").
mod bits {
    /// EC, bits \[31:26\].
    pub const EC_SHIFT: u32 = 26;
    /// Width mask of EC.
    pub const EC_MASK: u64 = 0x3f;
    /// IL, bit [25]: 1 = 32-bit instruction.
    pub const IL: u64 = 1 << 25;
    /// ISV, bit [24]: bits \[23:14\] hold a valid instruction syndrome.
    pub const ISV: u64 = 1 << 24;
    /// SAS, bits \[23:22\]: access size, log2 of the byte count.
    pub const SAS_SHIFT: u32 = 22;
    /// SSE, bit [21]: the loaded value must be sign-extended.
    pub const SSE: u64 = 1 << 21;
    /// SRT, bits \[20:16\]: the transfer register.
    pub const SRT_SHIFT: u32 = 16;
    /// Width mask of SRT.
    pub const SRT_MASK: u64 = 0x1f;
    /// SF, bit [15]: the transfer register is 64-bit (Xt), else 32-bit (Wt).
    pub const SF: u64 = 1 << 15;
    /// AR, bit [14]: acquire/release semantics.
    pub const AR: u64 = 1 << 14;
    /// CM, bit [8]: the abort came from a cache maintenance or address
    /// translation instruction.
    pub const CM: u64 = 1 << 8;
    /// S1PTW, bit [7]: the abort happened on a stage-2 fault during a stage-1
    /// translation table walk.
    pub const S1PTW: u64 = 1 << 7;
    /// WnR, bit [6]: 1 = write, 0 = read.
    pub const WNR: u64 = 1 << 6;
    /// DFSC, bits \[5:0\]: data fault status code.
    pub const DFSC_MASK: u64 = 0x3f;
}

/// Returns the exception class (ESR_ELx.EC, bits \[31:26\]) of a syndrome.
#[must_use]
pub const fn exception_class(esr: u64) -> u8 {
    // Masked to 6 bits, so the cast is lossless.
    ((esr >> bits::EC_SHIFT) & bits::EC_MASK) as u8
}

/// Computes the faulting IPA at EL2 from `HPFAR_EL2` and `FAR_EL2`.
///
/// `HPFAR_EL2.FIPA` (bits \[47:4\], or up to \[55:4\] with larger physical
/// address sizes) holds IPA bits \[55:12\]; the page offset comes from
/// `FAR_EL2\[11:0\]` (Arm ARM, `HPFAR_EL2` register description).
#[must_use]
pub const fn ipa_from_hpfar_far(hpfar_el2: u64, far_el2: u64) -> u64 {
    ((hpfar_el2 & 0x00ff_ffff_ffff_fff0) << 8) | (far_el2 & 0xfff)
}

/// Size of a single MMIO access: 1, 2, 4 or 8 bytes (ESR_ELx.SAS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessSize {
    /// One byte (`ldrb`, `strb`, `ldrsb`): SAS = 0b00.
    Byte = 1,
    /// Two bytes (`ldrh`, `strh`, `ldrsh`): SAS = 0b01.
    Half = 2,
    /// Four bytes (`ldr wN`, `str wN`, `ldrsw`): SAS = 0b10.
    Word = 4,
    /// Eight bytes (`ldr xN`, `str xN`): SAS = 0b11.
    Double = 8,
}

impl AccessSize {
    /// Decodes a two-bit SAS field (only bits \[1:0\] are looked at).
    #[must_use]
    pub const fn from_sas(sas: u8) -> Self {
        match sas & 0b11 {
            0 => Self::Byte,
            1 => Self::Half,
            2 => Self::Word,
            _ => Self::Double,
        }
    }

    /// The SAS encoding of this size (log2 of the byte count).
    #[must_use]
    pub const fn sas(self) -> u8 {
        match self {
            Self::Byte => 0,
            Self::Half => 1,
            Self::Word => 2,
            Self::Double => 3,
        }
    }

    /// Number of bytes accessed.
    #[must_use]
    pub const fn bytes(self) -> u8 {
        self as u8
    }

    /// Number of bits accessed.
    #[must_use]
    pub const fn bits(self) -> u32 {
        match self {
            Self::Byte => 8,
            Self::Half => 16,
            Self::Word => 32,
            Self::Double => 64,
        }
    }

    /// A mask of the access's low bits (`0xff`, `0xffff`, `0xffff_ffff` or
    /// `u64::MAX`).
    #[must_use]
    pub const fn mask(self) -> u64 {
        match self {
            Self::Byte => 0xff,
            Self::Half => 0xffff,
            Self::Word => 0xffff_ffff,
            Self::Double => u64::MAX,
        }
    }
}

/// The general-purpose register named by ESR_ELx.SRT.
///
/// Values 0 to 30 name X0 to X30 (or W0 to W30). For loads and stores of data
/// the encoding 31 names the zero register (XZR/WZR), not SP: a store of it
/// writes 0 and a load into it is discarded.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reg(u8);

impl Reg {
    /// The zero register XZR/WZR (encoding 31).
    pub const ZERO: Self = Self(31);

    /// Decodes a five-bit register field (only bits \[4:0\] are looked at).
    #[must_use]
    pub const fn from_srt(srt: u8) -> Self {
        Self(srt & 0x1f)
    }

    /// The general-purpose register Xn, `n` in `0..=30`; `None` otherwise.
    #[must_use]
    pub const fn x(n: u8) -> Option<Self> {
        if n <= 30 {
            Some(Self(n))
        } else {
            None
        }
    }

    /// The index `0..=30` of Xn, or `None` for the zero register.
    #[must_use]
    pub const fn index(self) -> Option<u8> {
        if self.0 <= 30 {
            Some(self.0)
        } else {
            None
        }
    }

    /// Whether this is the zero register.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 > 30
    }

    /// The raw five-bit encoding (`0..=31`).
    #[must_use]
    pub const fn encoding(self) -> u8 {
        self.0
    }
}

impl fmt::Debug for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index() {
            Some(n) => write!(f, "X{n}"),
            None => f.write_str("XZR"),
        }
    }
}

/// Why a syndrome cannot be emulated as an MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbortError {
    /// The exception class is not a Data Abort (0x24 or 0x25); carries EC.
    NotDataAbort(u8),
    /// ISV = 0: the syndrome does not describe the access (e.g. a load/store
    /// pair, a writeback addressing mode, SIMD&FP registers, or an atomic).
    /// Emulating it would require decoding the instruction; this crate never
    /// guesses.
    NoValidSyndrome,
    /// CM = 1: the abort came from a cache maintenance or address translation
    /// instruction, which is not a data access to emulate.
    CacheMaintenance,
    /// S1PTW = 1: the stage-2 fault happened during the guest's stage-1 page
    /// table walk (its page tables point at unbacked memory), not on the
    /// access itself.
    StageOneWalk,
    /// IL = 0: a 16-bit instruction, which cannot happen in AArch64 state.
    /// The syndrome is inconsistent (e.g. an AArch32 guest); the PC increment
    /// would be unknown.
    ShortInstruction,
}

impl fmt::Display for AbortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotDataAbort(ec) => write!(f, "exception class {ec:#04x} is not a data abort"),
            Self::NoValidSyndrome => {
                f.write_str("data abort without a valid instruction syndrome (ISV=0)")
            }
            Self::CacheMaintenance => {
                f.write_str("data abort from a cache maintenance instruction (CM=1)")
            }
            Self::StageOneWalk => f.write_str("stage-2 abort on a stage-1 table walk (S1PTW=1)"),
            Self::ShortInstruction => {
                f.write_str("16-bit instruction length (IL=0) in a data abort")
            }
        }
    }
}

impl core::error::Error for AbortError {}

/// One emulatable MMIO access, decoded from a Data Abort syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MmioAccess {
    /// The faulting intermediate physical address (given by the caller).
    pub ipa: u64,
    /// Access size (SAS).
    pub size: AccessSize,
    /// `true` for a store (WnR = 1), `false` for a load.
    pub write: bool,
    /// The transfer register (SRT); register 31 is the zero register.
    pub reg: Reg,
    /// SSE: a load must sign-extend the value to the register width.
    pub sign_extend: bool,
    /// SF: the transfer register is 64-bit (Xt); `false` means 32-bit (Wt),
    /// whose upper 32 bits a load clears.
    pub sf: bool,
    /// AR: the instruction has acquire/release semantics (`ldar`, `stlr`...).
    /// The trap itself already orders the access; informational.
    pub acquire_release: bool,
    /// DFSC: the data fault status code, e.g. `0b0001LL` for a translation
    /// fault at level LL. Informational.
    pub fault_status: u8,
}

/// Decodes a Data Abort syndrome (`ESR_EL2`, or `ESR_EL1` for a same-level
/// abort) and the faulting IPA into an [`MmioAccess`].
///
/// Accepts exception classes [`EC_DATA_ABORT_LOWER`] and
/// [`EC_DATA_ABORT_SAME`]. Bits above 31 (ISS2) are ignored.
///
/// # Errors
/// [`AbortError::NotDataAbort`] for another exception class,
/// [`AbortError::ShortInstruction`] for IL = 0,
/// [`AbortError::NoValidSyndrome`] for ISV = 0,
/// [`AbortError::CacheMaintenance`] for CM = 1 and
/// [`AbortError::StageOneWalk`] for S1PTW = 1, checked in that order.
pub const fn decode_data_abort(esr: u64, ipa: u64) -> Result<MmioAccess, AbortError> {
    let ec = exception_class(esr);
    if ec != EC_DATA_ABORT_LOWER && ec != EC_DATA_ABORT_SAME {
        return Err(AbortError::NotDataAbort(ec));
    }
    if esr & bits::IL == 0 {
        return Err(AbortError::ShortInstruction);
    }
    if esr & bits::ISV == 0 {
        return Err(AbortError::NoValidSyndrome);
    }
    if esr & bits::CM != 0 {
        return Err(AbortError::CacheMaintenance);
    }
    if esr & bits::S1PTW != 0 {
        return Err(AbortError::StageOneWalk);
    }
    // Each field is masked to its width before the cast, so the casts are
    // lossless.
    Ok(MmioAccess {
        ipa,
        size: AccessSize::from_sas(((esr >> bits::SAS_SHIFT) & 0b11) as u8),
        write: esr & bits::WNR != 0,
        reg: Reg::from_srt(((esr >> bits::SRT_SHIFT) & bits::SRT_MASK) as u8),
        sign_extend: esr & bits::SSE != 0,
        sf: esr & bits::SF != 0,
        acquire_release: esr & bits::AR != 0,
        fault_status: (esr & bits::DFSC_MASK) as u8,
    })
}

/// Read and write access to a stopped vCPU's general-purpose registers.
///
/// `r` is always in `0..=30` (X0 to X30): the zero register never reaches an
/// implementation.
pub trait VcpuRegs {
    /// Returns the 64-bit value of Xr.
    fn get(&self, r: u8) -> u64;
    /// Sets Xr to `v` (all 64 bits).
    fn set(&mut self, r: u8, v: u64);
}

impl VcpuRegs for [u64; 31] {
    fn get(&self, r: u8) -> u64 {
        self.as_slice().get(usize::from(r)).copied().unwrap_or(0)
    }

    fn set(&mut self, r: u8, v: u64) {
        if let Some(slot) = self.as_mut_slice().get_mut(usize::from(r)) {
            *slot = v;
        }
    }
}

/// The device side of an emulated access: whatever answers MMIO at an IPA.
pub trait MmioHandler {
    /// Performs a load of `size` bytes at `ipa`; the value is in the low
    /// bytes of the result (bits above the size are ignored).
    fn read(&mut self, ipa: u64, size: AccessSize) -> u64;
    /// Performs a store of `size` bytes at `ipa`; `value` is already masked
    /// to the size.
    fn write(&mut self, ipa: u64, size: AccessSize, value: u64);
}

impl MmioAccess {
    /// The value a store writes, given the transfer register's 64-bit value:
    /// masked to the access size. The caller passes the register's value;
    /// use [`MmioAccess::store_value`] to read it from a [`VcpuRegs`], which
    /// reads the zero register as 0.
    #[must_use]
    pub const fn write_value(&self, reg_value: u64) -> u64 {
        if self.reg.is_zero() {
            0
        } else {
            reg_value & self.size.mask()
        }
    }

    /// The value a store writes, read from the vCPU's transfer register
    /// (XZR/WZR reads as 0), masked to the access size.
    #[must_use]
    pub fn store_value<R: VcpuRegs + ?Sized>(&self, regs: &R) -> u64 {
        match self.reg.index() {
            Some(r) => self.write_value(regs.get(r)),
            None => 0,
        }
    }

    /// The value a load leaves in its destination register, given the raw
    /// value the device returned (bits above the access size are ignored):
    /// masked to the size, then, with SSE, sign-extended to 64 bits (SF = 1)
    /// or to 32 bits (SF = 0); with SF = 0 the upper 32 bits are zero, as for
    /// any write of a W register.
    ///
    /// Returns `(register index, value)`, or `None` when the destination is
    /// the zero register (the load's result is discarded).
    #[must_use]
    pub const fn load_result(&self, raw: u64) -> Option<(u8, u64)> {
        let index = match self.reg.index() {
            Some(index) => index,
            None => return None,
        };
        let value = raw & self.size.mask();
        let value = if self.sign_extend {
            let unused = 64u32.wrapping_sub(self.size.bits());
            // Shift the sign bit up to bit 63 and arithmetically back down.
            ((value.wrapping_shl(unused) as i64).wrapping_shr(unused)) as u64
        } else {
            value
        };
        let value = if self.sf { value } else { value & 0xffff_ffff };
        Some((index, value))
    }
}

/// Emulates a decoded access against `bus`: a store passes the register's
/// value to [`MmioHandler::write`]; a load calls [`MmioHandler::read`] and
/// writes the (extended) result back into the destination register.
///
/// Returns the PC increment, [`INSTRUCTION_LEN`]: the caller adds it to
/// ELR_EL2 (or the vCPU's PC) before resuming the guest.
pub fn complete_mmio<R, H>(access: &MmioAccess, regs: &mut R, bus: &mut H) -> u64
where
    R: VcpuRegs + ?Sized,
    H: MmioHandler + ?Sized,
{
    if access.write {
        bus.write(access.ipa, access.size, access.store_value(regs));
    } else {
        let raw = bus.read(access.ipa, access.size);
        if let Some((r, v)) = access.load_result(raw) {
            regs.set(r, v);
        }
    }
    INSTRUCTION_LEN
}

/// Decodes `esr` and `ipa` ([`decode_data_abort`]) and emulates the access
/// ([`complete_mmio`]). Returns the PC increment.
///
/// # Errors
/// Any [`AbortError`] from [`decode_data_abort`]; then neither the registers
/// nor the bus have been touched.
pub fn emulate_data_abort<R, H>(
    esr: u64,
    ipa: u64,
    regs: &mut R,
    bus: &mut H,
) -> Result<u64, AbortError>
where
    R: VcpuRegs + ?Sized,
    H: MmioHandler + ?Sized,
{
    let access = decode_data_abort(esr, ipa)?;
    Ok(complete_mmio(&access, regs, bus))
}

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests;
