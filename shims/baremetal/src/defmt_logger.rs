//! A defmt global logger for bare-metal AArch64 under a semihosting host:
//! encoded frames go to the host file [`DEFMT_FILE`] (relative to the host
//! process's working directory), opened with `SYS_OPEN` on first use and
//! written with `SYS_WRITE`. Decode it with the standard tooling:
//!
//! ```text
//! defmt-print -e path/to/image.elf < defmt.bin
//! ```
//!
//! (`cargo install defmt-print` when missing.) The binary must link with
//! `-Tdefmt.x`. Acquiring the logger masks DAIF (single core: see
//! `critical-section-single-core` for the limits); logging from an exception
//! handler that interrupted a log statement cannot happen, since the logger
//! runs with exceptions masked. Enabled by the `defmt-semihosting` feature,
//! which only a binary should select.

use core::cell::UnsafeCell;

use crate::semihosting::{self, Handle, OpenMode};

/// The host file the frames are written to.
pub const DEFMT_FILE: &core::ffi::CStr = c"defmt.bin";

const BUF_LEN: usize = 256;

struct State {
    taken: bool,
    daif: u64,
    encoder: defmt::Encoder,
    out: Out,
}

/// Buffered output to the host file.
struct Out {
    /// `None` before the first open; `Some(None)` when opening failed.
    handle: Option<Option<Handle>>,
    buf: [u8; BUF_LEN],
    len: usize,
}

impl Out {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len >= BUF_LEN {
                self.drain();
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len = self.len.wrapping_add(1);
            }
        }
    }

    fn drain(&mut self) {
        let handle = *self
            .handle
            .get_or_insert_with(|| semihosting::open(DEFMT_FILE, OpenMode::WriteBinary));
        if let (Some(h), Some(data)) = (handle, self.buf.get(..self.len)) {
            // Best effort: defmt's contract is that writes do not fail.
            let _ = semihosting::write(h, data);
        }
        self.len = 0;
    }
}

struct Cell(UnsafeCell<State>);

// SAFETY: the state is only touched between `acquire` and `release`, with
// DAIF masked on a single core, so never from two contexts at once.
unsafe impl Sync for Cell {}

static STATE: Cell = Cell(UnsafeCell::new(State {
    taken: false,
    daif: 0,
    encoder: defmt::Encoder::new(),
    out: Out {
        handle: None,
        buf: [0; BUF_LEN],
        len: 0,
    },
}));

#[defmt::global_logger]
struct SemihostingLogger;

/// # Safety (of the accesses below)
/// `state()` hands out a `&mut` to the one static; callers are `acquire`
/// (after masking DAIF), `write`/`flush`/`release` (between `acquire` and
/// `release`, defmt's contract), so no two such references are live at once.
#[allow(clippy::mut_from_ref)]
unsafe fn state() -> &'static mut State {
    // SAFETY: see above.
    unsafe { &mut *STATE.0.get() }
}

// SAFETY: acquire masks exceptions before taking the state and panics on
// re-entry; frames are encoded with defmt's Encoder.
unsafe impl defmt::Logger for SemihostingLogger {
    fn acquire() {
        let daif = crate::cpu::mask_all();
        // SAFETY: exceptions are masked on this (single) core.
        let st = unsafe { state() };
        if st.taken {
            panic!("defmt logger taken reentrantly");
        }
        st.taken = true;
        st.daif = daif;
        let State { encoder, out, .. } = st;
        encoder.start_frame(|b| out.push(b));
    }

    unsafe fn flush() {
        // SAFETY: the logger is acquired (defmt's contract).
        unsafe { state() }.out.drain();
    }

    unsafe fn release() {
        // SAFETY: the logger is acquired (defmt's contract).
        let st = unsafe { state() };
        let State { encoder, out, .. } = st;
        encoder.end_frame(|b| out.push(b));
        out.drain();
        st.taken = false;
        let daif = st.daif;
        // SAFETY: restores the DAIF value saved by the matching `acquire`.
        unsafe { crate::cpu::restore_daif(daif) };
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: the logger is acquired (defmt's contract).
        let st = unsafe { state() };
        let State { encoder, out, .. } = st;
        encoder.write(bytes, |b| out.push(b));
    }
}
