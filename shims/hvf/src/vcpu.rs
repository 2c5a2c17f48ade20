//! The registers of a stopped vCPU, behind a small trait.
//!
//! [`Vcpu`] is all the exit handler needs from the framework's vCPU: X0..X30
//! and PC. `HvfVcpu` (macOS only) implements it with `hv_vcpu_get_reg` /
//! `hv_vcpu_set_reg`; tests implement it with an array.

/// Read and write access to a stopped vCPU's general-purpose registers and
/// PC. Every call may fail (a framework error); the exit handler passes the
/// error on and never guesses a value.
pub trait Vcpu {
    /// What a failed register access reports.
    type Error;

    /// Returns the 64-bit value of X`n`; `n` is always in `0..=30` (the zero
    /// register never reaches an implementation).
    fn x(&self, n: u8) -> Result<u64, Self::Error>;
    /// Sets X`n` (`n` in `0..=30`) to `value`.
    fn set_x(&mut self, n: u8, value: u64) -> Result<(), Self::Error>;
    /// Returns the PC (the address of the instruction that trapped).
    fn pc(&self) -> Result<u64, Self::Error>;
    /// Sets the PC.
    fn set_pc(&mut self, value: u64) -> Result<(), Self::Error>;
}

impl<V: Vcpu + ?Sized> Vcpu for &mut V {
    type Error = V::Error;
    fn x(&self, n: u8) -> Result<u64, Self::Error> {
        (**self).x(n)
    }
    fn set_x(&mut self, n: u8, value: u64) -> Result<(), Self::Error> {
        (**self).set_x(n, value)
    }
    fn pc(&self) -> Result<u64, Self::Error> {
        (**self).pc()
    }
    fn set_pc(&mut self, value: u64) -> Result<(), Self::Error> {
        (**self).set_pc(value)
    }
}

/// A vCPU of Hypervisor.framework, by its `hv_vcpu_t` handle.
///
/// The framework requires every register access to come from the thread that
/// created the vCPU; `HvfVcpu` is therefore neither `Send` nor `Sync`, so it
/// stays on the thread where the embedder built it (build it on the vCPU's
/// thread). A call from another thread, or with a handle that is not a live
/// vCPU, fails with an [`HvError`](crate::ffi::HvError); it is not undefined
/// behaviour.
#[cfg(target_os = "macos")]
#[derive(Debug)]
pub struct HvfVcpu {
    id: crate::ffi::hv_vcpu_t,
    _not_send: core::marker::PhantomData<*const ()>,
}

#[cfg(target_os = "macos")]
impl HvfVcpu {
    /// Wraps the handle `hv_vcpu_create` returned on this thread.
    pub fn new(id: crate::ffi::hv_vcpu_t) -> Self {
        HvfVcpu {
            id,
            _not_send: core::marker::PhantomData,
        }
    }

    /// The `hv_vcpu_t` handle.
    pub fn id(&self) -> crate::ffi::hv_vcpu_t {
        self.id
    }

    fn get(&self, reg: crate::ffi::hv_reg_t) -> Result<u64, crate::ffi::HvError> {
        let mut value = 0u64;
        // SAFETY: `value` is a valid, writable u64 for the duration of the
        // call; the framework writes at most that one u64. A wrong handle or
        // thread is reported through the return code.
        let ret = unsafe { crate::ffi::hv_vcpu_get_reg(self.id, reg, &mut value) };
        crate::ffi::HvError::check(ret).map(|()| value)
    }

    fn set(&mut self, reg: crate::ffi::hv_reg_t, value: u64) -> Result<(), crate::ffi::HvError> {
        // SAFETY: plain values in, a return code out; no memory is shared.
        let ret = unsafe { crate::ffi::hv_vcpu_set_reg(self.id, reg, value) };
        crate::ffi::HvError::check(ret)
    }
}

#[cfg(target_os = "macos")]
impl Vcpu for HvfVcpu {
    type Error = crate::ffi::HvError;

    fn x(&self, n: u8) -> Result<u64, Self::Error> {
        self.get(x_reg(n)?)
    }
    fn set_x(&mut self, n: u8, value: u64) -> Result<(), Self::Error> {
        self.set(x_reg(n)?, value)
    }
    fn pc(&self) -> Result<u64, Self::Error> {
        self.get(crate::ffi::HV_REG_PC)
    }
    fn set_pc(&mut self, value: u64) -> Result<(), Self::Error> {
        self.set(crate::ffi::HV_REG_PC, value)
    }
}

/// The `hv_reg_t` of X`n`: `HV_REG_X0 + n` for `n` in `0..=30`;
/// `HV_BAD_ARGUMENT` otherwise (31 would be `HV_REG_PC`, not a GPR).
pub fn x_reg(n: u8) -> Result<crate::ffi::hv_reg_t, crate::ffi::HvError> {
    if n <= 30 {
        Ok(crate::ffi::HV_REG_X0 | u32::from(n))
    } else {
        Err(crate::ffi::HvError(crate::ffi::HV_BAD_ARGUMENT))
    }
}
