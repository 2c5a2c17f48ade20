//! Arm semihosting (AArch64): console output, host files and exit.
//!
//! A semihosting call is `hlt #0xf000` with the operation number in `x0` and
//! a parameter (usually the address of a parameter block) in `x1`; the result
//! comes back in `x0` (Arm "Semihosting for AArch32 and AArch64", version
//! 2.0, sections 5 and 6). QEMU answers it when started with `-semihosting`;
//! without a debugger or `-semihosting`, `hlt` raises an exception instead.

use core::arch::asm;
use core::ffi::CStr;
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

/// `SYS_OPEN`: open a host file.
pub const SYS_OPEN: usize = 0x01;
/// `SYS_CLOSE`: close a host file.
pub const SYS_CLOSE: usize = 0x02;
/// `SYS_WRITE0`: write a NUL-terminated string to the debug console.
pub const SYS_WRITE0: usize = 0x04;
/// `SYS_WRITE`: write a buffer to a host file handle.
pub const SYS_WRITE: usize = 0x05;
/// `SYS_EXIT`: report an exception (here: application exit) to the host.
pub const SYS_EXIT: usize = 0x18;
/// `ADP_Stopped_ApplicationExit`: the `SYS_EXIT` reason for a normal exit
/// carrying a status code.
pub const ADP_STOPPED_APPLICATION_EXIT: usize = 0x2_0026;

/// Performs semihosting operation `op` with parameter `arg`.
///
/// # Safety
/// `arg` must be what operation `op` expects: for most operations, the
/// address of a parameter block of the right size, valid for the call, whose
/// pointers are valid for the lengths given. A host must be attached (QEMU
/// `-semihosting`), or `hlt` traps.
#[inline]
pub unsafe fn call(op: usize, arg: usize) -> usize {
    let mut ret = op;
    // SAFETY: the caller guarantees `arg` is valid for `op`; the host may read
    // and write the memory it points at, which the asm's implicit memory
    // clobber (no `nomem`) accounts for.
    unsafe {
        asm!("hlt #0xf000", inout("x0") ret, in("x1") arg, options(nostack, preserves_flags))
    };
    ret
}

/// Writes a NUL-terminated string to the host's debug console (`SYS_WRITE0`).
pub fn write0(s: &CStr) {
    // SAFETY: SYS_WRITE0 takes the address of a NUL-terminated string, which
    // a `CStr` is.
    unsafe { call(SYS_WRITE0, s.as_ptr() as usize) };
}

/// An open host file handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle(usize);

/// File open modes of `SYS_OPEN` (ISO C `fopen` modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum OpenMode {
    /// `"r"`
    Read = 0,
    /// `"rb"`
    ReadBinary = 1,
    /// `"w"`: on the special path `":tt"`, the host's standard output.
    Write = 4,
    /// `"wb"`
    WriteBinary = 5,
    /// `"a"`: on `":tt"`, the host's standard error.
    Append = 8,
    /// `"ab"`
    AppendBinary = 9,
}

/// Opens the host file `path` (`SYS_OPEN`). `":tt"` names the console.
#[must_use]
pub fn open(path: &CStr, mode: OpenMode) -> Option<Handle> {
    let block = [path.as_ptr() as usize, mode as usize, path.count_bytes()];
    // SAFETY: SYS_OPEN takes a three-word block: name pointer, mode, name
    // length without the NUL; `block` lives across the call.
    let h = unsafe { call(SYS_OPEN, block.as_ptr() as usize) };
    // -1 reports failure.
    if h == usize::MAX {
        None
    } else {
        Some(Handle(h))
    }
}

/// Closes a handle (`SYS_CLOSE`).
pub fn close(handle: Handle) {
    let block = [handle.0];
    // SAFETY: SYS_CLOSE takes a one-word block holding the handle.
    unsafe { call(SYS_CLOSE, block.as_ptr() as usize) };
}

/// Writes `bytes` to `handle` (`SYS_WRITE`).
///
/// # Errors
/// The number of bytes *not* written, if the host wrote fewer.
pub fn write(handle: Handle, bytes: &[u8]) -> Result<(), usize> {
    if bytes.is_empty() {
        return Ok(());
    }
    let block = [handle.0, bytes.as_ptr() as usize, bytes.len()];
    // SAFETY: SYS_WRITE takes a three-word block: handle, buffer pointer and
    // length; the buffer is valid for its length during the call.
    match unsafe { call(SYS_WRITE, block.as_ptr() as usize) } {
        0 => Ok(()),
        left => Err(left),
    }
}

/// Sentinel: stdout not opened yet.
const UNOPENED: usize = usize::MAX;
/// Sentinel: opening stdout failed.
const FAILED: usize = usize::MAX - 1;
static STDOUT: AtomicUsize = AtomicUsize::new(UNOPENED);

/// The host's standard output (`":tt"` opened for writing), opened on first
/// use and cached.
#[must_use]
pub fn stdout() -> Option<Handle> {
    match STDOUT.load(Ordering::Relaxed) {
        UNOPENED => {
            let h = open(c":tt", OpenMode::Write);
            // Two racing first callers open it twice; both handles work.
            STDOUT.store(h.map_or(FAILED, |h| h.0), Ordering::Relaxed);
            h
        }
        FAILED => None,
        h => Some(Handle(h)),
    }
}

/// A [`fmt::Write`] sink to the host's standard output, for `write!` and the
/// [`crate::hprint!`] / [`crate::hprintln!`] macros. Output is lost when
/// there is no host.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostStdout;

impl fmt::Write for HostStdout {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match stdout() {
            Some(h) => write(h, s.as_bytes()).map_err(|_| fmt::Error),
            None => Err(fmt::Error),
        }
    }
}

/// Ends the program: `SYS_EXIT` with `[ADP_Stopped_ApplicationExit, status]`;
/// QEMU exits with `status` as its exit code. If the host ignores the call,
/// parks the CPU.
pub fn exit(status: u32) -> ! {
    let block = [ADP_STOPPED_APPLICATION_EXIT, status as usize];
    // SAFETY: on AArch64, SYS_EXIT takes a two-word block: reason and
    // subcode (the exit status).
    unsafe { call(SYS_EXIT, block.as_ptr() as usize) };
    loop {
        crate::cpu::wfi();
    }
}

/// Prints to the host's standard output over semihosting.
#[macro_export]
macro_rules! hprint {
    ($($arg:tt)*) => {{
        let _ = ::core::fmt::Write::write_fmt(&mut $crate::semihosting::HostStdout, ::core::format_args!($($arg)*));
    }};
}

/// Prints a line to the host's standard output over semihosting.
#[macro_export]
macro_rules! hprintln {
    () => { $crate::hprint!("\n") };
    ($($arg:tt)*) => {{
        $crate::hprint!("{}\n", ::core::format_args!($($arg)*));
    }};
}
