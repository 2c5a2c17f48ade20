//! The device's interrupt line: a level-triggered SPI, either through the
//! in-kernel GIC of Hypervisor.framework (macOS 15.0+, `hv_gic_set_spi`) or
//! through a callback into a VMM that emulates its own GIC.
//!
//! The core's transport raises the line when it sets a bit in
//! InterruptStatus and lowers it when the driver's InterruptAck clears the
//! last one (or on reset), so the line follows "InterruptStatus != 0": a
//! level-sensitive SPI, configured as such in the guest's device tree
//! (`interrupts = <GIC_SPI n IRQ_TYPE_LEVEL_HIGH>`).

use virtnet::mmio::InterruptLine;

/// Something that drives SPI levels: the in-kernel GIC, or a test double.
pub trait Gic {
    /// What a failed call reports.
    type Error;
    /// Sets the level of the SPI with interrupt ID `intid` (the absolute
    /// GIC INTID, 32 or more for an SPI).
    fn set_spi(&mut self, intid: u32, level: bool) -> Result<(), Self::Error>;
}

impl<G: Gic + ?Sized> Gic for &mut G {
    type Error = G::Error;
    fn set_spi(&mut self, intid: u32, level: bool) -> Result<(), Self::Error> {
        (**self).set_spi(intid, level)
    }
}

/// The device's line as one SPI of a [`Gic`]: `raise` sets level 1, `lower`
/// sets level 0.
///
/// A call that would not change the level the GIC was last told
/// successfully is skipped (the transport raises on every used buffer).
/// A failed call is counted and kept in [`GicLine::last_error`], and the
/// level is then considered unknown, so the next raise or lower is sent
/// again.
#[derive(Debug)]
pub struct GicLine<G: Gic> {
    gic: G,
    intid: u32,
    level: Option<bool>,
    failures: u64,
    last_error: Option<G::Error>,
}

impl<G: Gic> GicLine<G> {
    /// The line on SPI `intid` of `gic`.
    pub fn new(gic: G, intid: u32) -> Self {
        GicLine {
            gic,
            intid,
            level: None,
            failures: 0,
            last_error: None,
        }
    }

    /// The SPI's interrupt ID.
    pub fn intid(&self) -> u32 {
        self.intid
    }

    /// The level last set successfully (`None` before the first call or
    /// after a failure).
    pub fn level(&self) -> Option<bool> {
        self.level
    }

    /// How many `set_spi` calls failed.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The error of the most recent failed call, taken.
    pub fn take_last_error(&mut self) -> Option<G::Error> {
        self.last_error.take()
    }

    /// The error of the most recent failed call.
    pub fn last_error(&self) -> Option<&G::Error> {
        self.last_error.as_ref()
    }

    /// The GIC.
    pub fn gic(&self) -> &G {
        &self.gic
    }

    /// The GIC, mutably.
    pub fn gic_mut(&mut self) -> &mut G {
        &mut self.gic
    }

    fn set(&mut self, level: bool) {
        if self.level == Some(level) {
            return;
        }
        match self.gic.set_spi(self.intid, level) {
            Ok(()) => self.level = Some(level),
            Err(e) => {
                self.level = None;
                self.failures = self.failures.saturating_add(1);
                self.last_error = Some(e);
            }
        }
    }
}

impl<G: Gic> InterruptLine for GicLine<G> {
    fn raise(&mut self) {
        self.set(true);
    }
    fn lower(&mut self) {
        self.set(false);
    }
}

/// The device's line as a callback into the VMM (for VMMs that emulate their
/// own GIC, or run on macOS before 15): `raise` calls it with `true`,
/// `lower` with `false`. Every call is forwarded; the VMM's GIC model owns
/// the level.
pub struct CallbackLine<F: FnMut(bool)> {
    callback: F,
}

impl<F: FnMut(bool)> CallbackLine<F> {
    /// A line that calls `callback(level)`.
    pub fn new(callback: F) -> Self {
        CallbackLine { callback }
    }
}

impl<F: FnMut(bool)> InterruptLine for CallbackLine<F> {
    fn raise(&mut self) {
        (self.callback)(true);
    }
    fn lower(&mut self) {
        (self.callback)(false);
    }
}

impl<F: FnMut(bool)> core::fmt::Debug for CallbackLine<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CallbackLine")
    }
}

/// The in-kernel GIC of Hypervisor.framework (macOS 15.0 and later), through
/// `hv_gic_set_spi`.
///
/// The VMM must have created the GIC (`hv_gic_create`, after `hv_vm_create`
/// and before the first vCPU) and described it to the guest; otherwise the
/// call fails and [`GicLine`] records the error.
#[cfg(target_os = "macos")]
#[derive(Clone, Copy, Debug)]
pub struct HvfGic {
    set_spi: crate::ffi::HvGicSetSpiFn,
}

#[cfg(target_os = "macos")]
impl HvfGic {
    /// Looks `hv_gic_set_spi` up in the loaded Hypervisor.framework.
    /// `None` on macOS releases before 15.0, which lack it: use a
    /// [`CallbackLine`] into the VMM's own GIC model there.
    pub fn new() -> Option<Self> {
        // SAFETY: RTLD_DEFAULT searches the images already loaded (this
        // crate links Hypervisor.framework); the name is a NUL-terminated C
        // string literal. dlsym has no other preconditions.
        let sym = unsafe {
            libc::dlsym(
                libc::RTLD_DEFAULT,
                crate::ffi::HV_GIC_SET_SPI_SYMBOL.as_ptr(),
            )
        };
        if sym.is_null() {
            return None;
        }
        // SAFETY: the symbol found under this name is Hypervisor.framework's
        // `hv_return_t hv_gic_set_spi(uint32_t intid, bool level)` (hv_gic.h),
        // whose C ABI is exactly `HvGicSetSpiFn`; a non-null data pointer to
        // a function converts to a function pointer on Apple platforms.
        let set_spi =
            unsafe { core::mem::transmute::<*mut libc::c_void, crate::ffi::HvGicSetSpiFn>(sym) };
        Some(HvfGic { set_spi })
    }
}

#[cfg(target_os = "macos")]
impl Gic for HvfGic {
    type Error = crate::ffi::HvError;
    fn set_spi(&mut self, intid: u32, level: bool) -> Result<(), Self::Error> {
        // SAFETY: plain values in, a return code out; the framework checks
        // `intid` against the GIC's SPI range and reports misuse (no GIC
        // created, bad INTID) through the return code.
        let ret = unsafe { (self.set_spi)(intid, level) };
        crate::ffi::HvError::check(ret)
    }
}
