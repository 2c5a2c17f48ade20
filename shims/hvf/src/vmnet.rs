//! A [`Backend`] on vmnet.framework (macOS only, feature `vmnet`).
//!
//! **Not tested.** This repository's CI runs on Linux: the module is only
//! compiled for `aarch64-apple-darwin` (as an rlib, without linking). The
//! declarations follow `<vmnet/vmnet.h>`, `<xpc/xpc.h>`, `<dispatch/dispatch.h>`
//! and Clang's Block ABI ("Block Implementation Specification",
//! `Block_literal_1`), and the call sequence follows what QEMU's
//! `net/vmnet-common.m` does; none of it has been run. vmnet needs the
//! `com.apple.vm.networking` entitlement or root.
//!
//! Flow: [`VmnetBackend::start`] creates a serial dispatch queue, starts the
//! interface with an XPC dictionary holding the operation mode (and, for
//! bridged mode, the host interface), waits on a semaphore for the start
//! handler, and copies the MAC address, MTU and largest packet size out of
//! the interface parameters. It then registers a
//! `VMNET_INTERFACE_PACKETS_AVAILABLE` callback that writes one byte to a
//! non-blocking pipe, whose read end is the backend's [`AsRawFd`]: the VMM
//! waits for it to become readable and then polls the device. `receive`
//! reads one packet with `vmnet_read`; when none is waiting it drains the
//! pipe and tries once more, so a packet that arrives after the drain always
//! leaves the pipe readable. `transmit` writes one packet with `vmnet_write`.
//! Dropping the backend stops the interface and waits for the stop handler.
#![allow(non_camel_case_types, non_upper_case_globals)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use virtnet::device::{Backend, BackendError, RxFrame};
use virtnet::wire::NetHdrRepr;

type xpc_object_t = *mut c_void;
type dispatch_object_t = *mut c_void;
type dispatch_queue_t = *mut c_void;
type dispatch_semaphore_t = *mut c_void;
type interface_ref = *mut c_void;
type vmnet_return_t = u32;
type interface_event_t = u32;

/// `operating_modes_t` values.
const VMNET_HOST_MODE: u64 = 1000;
const VMNET_SHARED_MODE: u64 = 1001;
const VMNET_BRIDGED_MODE: u64 = 1002;

/// `vmnet_return_t` values.
const VMNET_SUCCESS: vmnet_return_t = 1000;
const VMNET_PACKET_TOO_BIG: vmnet_return_t = 1006;
const VMNET_BUFFER_EXHAUSTED: vmnet_return_t = 1007;

/// `VMNET_INTERFACE_PACKETS_AVAILABLE` (`interface_event_t`).
const VMNET_INTERFACE_PACKETS_AVAILABLE: interface_event_t = 1 << 0;

/// `DISPATCH_TIME_FOREVER`.
const DISPATCH_TIME_FOREVER: u64 = !0;

/// `struct vmpktdesc` (`<vmnet/vmnet.h>`).
#[repr(C)]
struct vmpktdesc {
    vm_pkt_size: usize,
    vm_pkt_iov: *mut libc::iovec,
    vm_pkt_iovcnt: u32,
    vm_flags: u32,
}

#[link(name = "vmnet", kind = "framework")]
extern "C" {
    static vmnet_operation_mode_key: *const c_char;
    static vmnet_shared_interface_name_key: *const c_char;
    static vmnet_mac_address_key: *const c_char;
    static vmnet_mtu_key: *const c_char;
    static vmnet_max_packet_size_key: *const c_char;

    fn vmnet_start_interface(
        interface_desc: xpc_object_t,
        queue: dispatch_queue_t,
        handler: *mut c_void,
    ) -> interface_ref;
    fn vmnet_stop_interface(
        interface: interface_ref,
        queue: dispatch_queue_t,
        handler: *mut c_void,
    ) -> vmnet_return_t;
    fn vmnet_interface_set_event_callback(
        interface: interface_ref,
        event_mask: interface_event_t,
        queue: dispatch_queue_t,
        callback: *mut c_void,
    ) -> vmnet_return_t;
    fn vmnet_read(
        interface: interface_ref,
        packets: *mut vmpktdesc,
        pktcnt: *mut c_int,
    ) -> vmnet_return_t;
    fn vmnet_write(
        interface: interface_ref,
        packets: *mut vmpktdesc,
        pktcnt: *mut c_int,
    ) -> vmnet_return_t;
}

// libSystem: libxpc, libdispatch, libsystem_blocks.
extern "C" {
    static _NSConcreteStackBlock: [*const c_void; 32];

    fn xpc_dictionary_create(
        keys: *const *const c_char,
        values: *const xpc_object_t,
        count: usize,
    ) -> xpc_object_t;
    fn xpc_dictionary_set_uint64(xdict: xpc_object_t, key: *const c_char, value: u64);
    fn xpc_dictionary_set_string(xdict: xpc_object_t, key: *const c_char, string: *const c_char);
    fn xpc_dictionary_get_uint64(xdict: xpc_object_t, key: *const c_char) -> u64;
    fn xpc_dictionary_get_string(xdict: xpc_object_t, key: *const c_char) -> *const c_char;
    fn xpc_release(object: xpc_object_t);

    fn dispatch_queue_create(label: *const c_char, attr: *mut c_void) -> dispatch_queue_t;
    fn dispatch_semaphore_create(value: isize) -> dispatch_semaphore_t;
    fn dispatch_semaphore_signal(dsema: dispatch_semaphore_t) -> isize;
    fn dispatch_semaphore_wait(dsema: dispatch_semaphore_t, timeout: u64) -> isize;
    fn dispatch_release(object: dispatch_object_t);
}

/// `struct Block_descriptor_1` without copy/dispose helpers or signature
/// (flags 0): the captures below are plain values.
#[repr(C)]
struct BlockDescriptor {
    reserved: usize,
    size: usize,
}

/// `struct Block_literal_1` header followed by the captured values `C`.
#[repr(C)]
struct Block<F, C> {
    isa: *const c_void,
    flags: i32,
    reserved: i32,
    invoke: F,
    descriptor: *const BlockDescriptor,
    captured: C,
}

impl<F, C> Block<F, C> {
    const DESCRIPTOR: BlockDescriptor = BlockDescriptor {
        reserved: 0,
        size: core::mem::size_of::<Self>(),
    };

    /// A stack block. The callee `Block_copy`s it (a plain `memmove` of
    /// `size` bytes, since flags are 0) if it keeps it.
    fn new(invoke: F, captured: C, descriptor: &'static BlockDescriptor) -> Self {
        Block {
            isa: (&raw const _NSConcreteStackBlock).cast(),
            flags: 0,
            reserved: 0,
            invoke,
            descriptor,
            captured,
        }
    }
}

/// What the start handler reports back.
struct StartResult {
    status: vmnet_return_t,
    mac: Option<[u8; 6]>,
    mtu: u64,
    max_packet_size: u64,
}

type StartBlock = Block<
    unsafe extern "C" fn(*mut c_void, vmnet_return_t, xpc_object_t),
    (*mut StartResult, dispatch_semaphore_t),
>;
static START_DESCRIPTOR: BlockDescriptor = StartBlock::DESCRIPTOR;

type StopBlock = Block<
    unsafe extern "C" fn(*mut c_void, vmnet_return_t),
    (*mut vmnet_return_t, dispatch_semaphore_t),
>;
static STOP_DESCRIPTOR: BlockDescriptor = StopBlock::DESCRIPTOR;

type EventBlock = Block<unsafe extern "C" fn(*mut c_void, interface_event_t, xpc_object_t), RawFd>;
static EVENT_DESCRIPTOR: BlockDescriptor = EventBlock::DESCRIPTOR;

/// Start handler: `void (^)(vmnet_return_t status, xpc_object_t param)`.
unsafe extern "C" fn start_handler(
    block: *mut c_void,
    status: vmnet_return_t,
    param: xpc_object_t,
) {
    // SAFETY: `block` is (a copy of) the `StartBlock` built in `start`; its
    // captures point at the `StartResult` and semaphore that `start` keeps
    // alive until this handler signals.
    let (result, sem) = unsafe { (*block.cast::<StartBlock>()).captured };
    // SAFETY: see above; `start` does not touch the result until signalled.
    let result = unsafe { &mut *result };
    result.status = status;
    if status == VMNET_SUCCESS && !param.is_null() {
        // SAFETY: `param` is the interface-parameter dictionary, valid for
        // the duration of this handler; the keys are vmnet's constants.
        unsafe {
            result.mtu = xpc_dictionary_get_uint64(param, vmnet_mtu_key);
            result.max_packet_size = xpc_dictionary_get_uint64(param, vmnet_max_packet_size_key);
            let mac = xpc_dictionary_get_string(param, vmnet_mac_address_key);
            if !mac.is_null() {
                result.mac = parse_mac(CStr::from_ptr(mac).to_bytes());
            }
        }
    }
    // SAFETY: the semaphore is alive until `start` returns, after the wait.
    unsafe { dispatch_semaphore_signal(sem) };
}

/// Stop handler: `void (^)(vmnet_return_t status)`.
unsafe extern "C" fn stop_handler(block: *mut c_void, status: vmnet_return_t) {
    // SAFETY: as in `start_handler`, for the `StopBlock` built in `drop`.
    unsafe {
        let (out, sem) = (*block.cast::<StopBlock>()).captured;
        *out = status;
        dispatch_semaphore_signal(sem);
    }
}

/// Event callback: `void (^)(interface_event_t mask, xpc_object_t event)`.
unsafe extern "C" fn event_handler(block: *mut c_void, mask: interface_event_t, _: xpc_object_t) {
    if mask & VMNET_INTERFACE_PACKETS_AVAILABLE == 0 {
        return;
    }
    // SAFETY: `block` is (a copy of) the `EventBlock` built in `start`; the
    // pipe's write end stays open until the interface is stopped in `drop`.
    let fd = unsafe { (*block.cast::<EventBlock>()).captured };
    let byte = 1u8;
    // A full pipe (EAGAIN) already signals readiness; nothing else to do.
    // SAFETY: one readable byte at a valid address.
    let _ = unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
}

/// Parses vmnet's `"a:b:c:d:e:f"` MAC string (components of one or two hex
/// digits).
fn parse_mac(s: &[u8]) -> Option<[u8; 6]> {
    let s = core::str::from_utf8(s).ok()?;
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The vmnet operation mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmnetMode {
    /// `VMNET_SHARED_MODE`: NAT to the host's network.
    Shared,
    /// `VMNET_HOST_MODE`: host-only network.
    Host,
    /// `VMNET_BRIDGED_MODE` onto the named host interface (e.g. `en0`).
    Bridged(String),
}

/// What the interface reported when it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmnetParams {
    /// The MAC address vmnet assigned (give it to the guest in `NetConfig`).
    pub mac: Option<[u8; 6]>,
    /// The interface MTU.
    pub mtu: u64,
    /// The largest packet `vmnet_read`/`vmnet_write` handle.
    pub max_packet_size: u64,
}

/// A failed vmnet call: the `vmnet_return_t` (1001 `VMNET_FAILURE`, 1005
/// `VMNET_INVALID_ACCESS` without the entitlement, ...), or an OS error.
#[derive(Debug)]
pub enum VmnetError {
    /// A vmnet status other than `VMNET_SUCCESS`.
    Status(u32),
    /// `vmnet_start_interface` returned no interface.
    NoInterface,
    /// Creating the pipe or a dispatch object failed.
    Os(io::Error),
}

impl core::fmt::Display for VmnetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmnetError::Status(s) => write!(f, "vmnet returned {s}"),
            VmnetError::NoInterface => f.write_str("vmnet_start_interface returned NULL"),
            VmnetError::Os(e) => write!(f, "vmnet setup: {e}"),
        }
    }
}

impl std::error::Error for VmnetError {}

/// A [`Backend`] on a vmnet interface.
#[derive(Debug)]
pub struct VmnetBackend {
    iface: interface_ref,
    queue: dispatch_queue_t,
    params: VmnetParams,
    ready_rd: RawFd,
    ready_wr: RawFd,
    scratch: Vec<u8>,
}

// SAFETY: the interface and queue handles are thread-safe libdispatch/vmnet
// objects; vmnet_read/vmnet_write may be called from any thread (one at a
// time, which `&mut self` guarantees).
unsafe impl Send for VmnetBackend {}

impl VmnetBackend {
    /// Starts a vmnet interface in `mode` and waits until it is up.
    ///
    /// # Errors
    /// [`VmnetError`] when vmnet refuses (missing entitlement or root,
    /// conflicting sharing service, bad bridged interface).
    pub fn start(mode: &VmnetMode) -> Result<Self, VmnetError> {
        let (ready_rd, ready_wr) = nonblocking_pipe().map_err(VmnetError::Os)?;
        let bridged_if = match mode {
            VmnetMode::Bridged(name) => Some(CString::new(name.as_str()).map_err(|_| {
                VmnetError::Os(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "NUL in interface name",
                ))
            })?),
            _ => None,
        };
        let mode_value = match mode {
            VmnetMode::Host => VMNET_HOST_MODE,
            VmnetMode::Shared => VMNET_SHARED_MODE,
            VmnetMode::Bridged(_) => VMNET_BRIDGED_MODE,
        };
        // SAFETY: the calls follow vmnet.h: an XPC dictionary with the mode
        // (and bridged interface), a serial queue, a start block whose
        // captures (`result`, `sem`) live on this stack frame until the
        // semaphore wait returns, i.e. until the handler has finished with
        // them. Every object created is released on every path.
        unsafe {
            let desc = xpc_dictionary_create(core::ptr::null(), core::ptr::null(), 0);
            xpc_dictionary_set_uint64(desc, vmnet_operation_mode_key, mode_value);
            if let Some(name) = &bridged_if {
                xpc_dictionary_set_string(desc, vmnet_shared_interface_name_key, name.as_ptr());
            }
            let queue = dispatch_queue_create(c"virtnet.vmnet".as_ptr(), core::ptr::null_mut());
            let sem = dispatch_semaphore_create(0);
            let mut result = StartResult {
                status: 0,
                mac: None,
                mtu: 0,
                max_packet_size: 0,
            };
            let mut block =
                StartBlock::new(start_handler, (&raw mut result, sem), &START_DESCRIPTOR);
            let iface = vmnet_start_interface(desc, queue, (&raw mut block).cast());
            if !iface.is_null() {
                dispatch_semaphore_wait(sem, DISPATCH_TIME_FOREVER);
            }
            dispatch_release(sem);
            xpc_release(desc);
            let fail = |e| {
                dispatch_release(queue);
                libc::close(ready_rd);
                libc::close(ready_wr);
                Err(e)
            };
            if iface.is_null() {
                return fail(VmnetError::NoInterface);
            }
            if result.status != VMNET_SUCCESS {
                return fail(VmnetError::Status(result.status));
            }
            let mut event = EventBlock::new(event_handler, ready_wr, &EVENT_DESCRIPTOR);
            let ret = vmnet_interface_set_event_callback(
                iface,
                VMNET_INTERFACE_PACKETS_AVAILABLE,
                queue,
                (&raw mut event).cast(),
            );
            let params = VmnetParams {
                mac: result.mac,
                mtu: result.mtu,
                max_packet_size: result.max_packet_size,
            };
            let this = VmnetBackend {
                iface,
                queue,
                params,
                ready_rd,
                ready_wr,
                scratch: vec![0; usize::try_from(params.max_packet_size).unwrap_or(0)],
            };
            if ret != VMNET_SUCCESS {
                drop(this); // stops the interface
                return Err(VmnetError::Status(ret));
            }
            Ok(this)
        }
    }

    /// What the interface reported when it started.
    pub fn params(&self) -> VmnetParams {
        self.params
    }

    fn read_packet(&mut self, direct: bool, buf: &mut [u8]) -> Result<Option<usize>, BackendError> {
        let target: &mut [u8] = if direct { buf } else { &mut self.scratch };
        let mut iov = libc::iovec {
            iov_base: target.as_mut_ptr().cast(),
            iov_len: target.len(),
        };
        let mut pkt = vmpktdesc {
            vm_pkt_size: target.len(),
            vm_pkt_iov: &raw mut iov,
            vm_pkt_iovcnt: 1,
            vm_flags: 0,
        };
        let mut count: c_int = 1;
        // SAFETY: one descriptor with one iovec over `target`, which is
        // writable for `iov_len` bytes for the duration of the call.
        let ret = unsafe { vmnet_read(self.iface, &raw mut pkt, &raw mut count) };
        if ret != VMNET_SUCCESS {
            return Err(BackendError::Io);
        }
        Ok((count > 0).then_some(pkt.vm_pkt_size.min(target.len())))
    }

    fn drain_ready(&self) {
        let mut sink = [0u8; 64];
        loop {
            // SAFETY: reading into a local buffer of `sink.len()` bytes.
            let n = unsafe { libc::read(self.ready_rd, sink.as_mut_ptr().cast(), sink.len()) };
            if n <= 0 {
                break;
            }
        }
    }

    fn receive_once(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        let direct = buf.len() as u64 >= self.params.max_packet_size;
        let Some(len) = self.read_packet(direct, buf)? else {
            return Ok(None);
        };
        if !direct {
            // Copied from the scratch buffer; a packet that does not fit
            // the device's buffer is dropped.
            let (Some(dst), Some(src)) = (buf.get_mut(..len), self.scratch.get(..len)) else {
                return Ok(None);
            };
            dst.copy_from_slice(src);
        }
        Ok(Some(RxFrame {
            len,
            hdr: NetHdrRepr::default(),
        }))
    }
}

impl Backend for VmnetBackend {
    fn transmit(&mut self, hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        if hdr.csum.is_some()
            || hdr.gso.is_some()
            || frame.len() as u64 > self.params.max_packet_size
        {
            return Err(BackendError::Refused);
        }
        let mut iov = libc::iovec {
            iov_base: frame.as_ptr().cast_mut().cast(),
            iov_len: frame.len(),
        };
        let mut pkt = vmpktdesc {
            vm_pkt_size: frame.len(),
            vm_pkt_iov: &raw mut iov,
            vm_pkt_iovcnt: 1,
            vm_flags: 0,
        };
        let mut count: c_int = 1;
        // SAFETY: one descriptor with one iovec over `frame`; vmnet_write
        // only reads the packet bytes.
        let ret = unsafe { vmnet_write(self.iface, &raw mut pkt, &raw mut count) };
        match ret {
            VMNET_SUCCESS if count == 1 => Ok(()),
            VMNET_SUCCESS | VMNET_BUFFER_EXHAUSTED => Err(BackendError::Busy),
            VMNET_PACKET_TOO_BIG => Err(BackendError::Refused),
            _ => Err(BackendError::Io),
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        if let Some(frame) = self.receive_once(buf)? {
            return Ok(Some(frame));
        }
        self.drain_ready();
        self.receive_once(buf)
    }
}

impl AsRawFd for VmnetBackend {
    /// The read end of the readiness pipe: readable when vmnet has packets.
    fn as_raw_fd(&self) -> RawFd {
        self.ready_rd
    }
}

impl Drop for VmnetBackend {
    fn drop(&mut self) {
        // SAFETY: stops the interface with a stop block whose captures live
        // on this frame until the semaphore wait returns; after the stop
        // handler ran no event callback can write to the pipe, so it is
        // closed last. A failed stop skips the wait (no handler will run).
        unsafe {
            let sem = dispatch_semaphore_create(0);
            let mut status: vmnet_return_t = 0;
            let mut block = StopBlock::new(stop_handler, (&raw mut status, sem), &STOP_DESCRIPTOR);
            if vmnet_stop_interface(self.iface, self.queue, (&raw mut block).cast())
                == VMNET_SUCCESS
            {
                dispatch_semaphore_wait(sem, DISPATCH_TIME_FOREVER);
            }
            dispatch_release(sem);
            dispatch_release(self.queue);
            libc::close(self.ready_rd);
            libc::close(self.ready_wr);
        }
    }
}

/// A pipe with both ends non-blocking and close-on-exec.
fn nonblocking_pipe() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [rd, wr] = fds;
    for fd in [rd, wr] {
        // SAFETY: fcntl on descriptors this function just created.
        let ok = unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            fl >= 0
                && libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) == 0
                && libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
        };
        if !ok {
            let e = io::Error::last_os_error();
            // SAFETY: closing the descriptors created above, once.
            unsafe {
                libc::close(rd);
                libc::close(wr);
            }
            return Err(e);
        }
    }
    Ok((rd, wr))
}

#[cfg(test)]
mod tests {
    use super::parse_mac;

    #[test]
    fn mac_strings() {
        assert_eq!(
            parse_mac(b"8e:6a:3:b:ff:10"),
            Some([0x8e, 0x6a, 0x03, 0x0b, 0xff, 0x10])
        );
        assert_eq!(parse_mac(b"8e:6a:3:b:ff"), None);
        assert_eq!(parse_mac(b"8e:6a:3:b:ff:10:1"), None);
        assert_eq!(parse_mac(b"8e:6a:3:b:fff:10"), None);
    }
}
