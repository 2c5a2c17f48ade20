//! The TAP backend: a Linux TAP interface opened with `IFF_TAP | IFF_NO_PI |
//! IFF_VNET_HDR`, so every frame carries the 12-byte virtio-net header and
//! checksum / segmentation offloads pass between the guest and the host
//! kernel untouched.
//!
//! - `TUNSETVNETHDRSZ` 12: the header with `num_buffers` (VERSION_1 layout).
//! - `TUNSETOFFLOAD`: what the *guest* can take (its negotiated GUEST_CSUM /
//!   GUEST_TSO4 / GUEST_TSO6 / GUEST_ECN), so the kernel completes checksums
//!   and segments for a guest that cannot (set again on every feature
//!   negotiation, cleared on reset).
//! - The fd is non-blocking: a full TAP queue drops the frame (`Busy`,
//!   counted), an empty one returns `None`.
//! - One `writev` per sent frame, one `readv` per received frame: header and
//!   frame go in one system call, no copy. A TAP takes one frame per call;
//!   batches through `io_uring` measured no faster (`cargo xtask bench
//!   tap`, specs/10-performance.md "TAP reads and writes").

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::HostBackend;
use virtnet::device::{Backend, BackendCaps, BackendError, RxFrame};
use virtnet::features::Features;
use virtnet::wire::net_hdr::NetHdrFlags;
use virtnet::wire::{NetHdrRepr, VirtioNetHdr};
use zerocopy::{FromBytes, IntoBytes};

/// Size of the virtio-net header on the TAP fd.
pub const VNET_HDR_LEN: usize = 12;

/// What a TAP accepts from userspace: every offload the kernel can finish
/// (partial checksums, TSO, ECN); frames are validated against this set.
const TAP_ACCEPTS: Features = Features::CSUM
    .union(Features::HOST_TSO4)
    .union(Features::HOST_TSO6)
    .union(Features::HOST_ECN);

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags (the rest of
/// the 40-byte union is unused).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A TAP interface.
#[derive(Debug)]
pub struct TapBackend {
    fd: OwnedFd,
    name: String,
    offloads: libc::c_uint,
}

impl TapBackend {
    /// Open (or create, with CAP_NET_ADMIN) the TAP interface `name`.
    pub fn open(name: &str) -> io::Result<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['\0', '/']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?} (1 to 15 bytes)"),
            ));
        }
        // SAFETY: a constant NUL-terminated path; the result is checked.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("/dev/net/tun: {e}")));
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut ifr = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
            _pad: [0; 22],
        };
        if let Some(dst) = ifr.name.get_mut(..name.len()) {
            dst.copy_from_slice(name.as_bytes());
        }
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReq`
        // lays out (40 bytes, name then flags) and which outlives the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr as *mut IfReq) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let hdr_sz: c_int = VNET_HDR_LEN as c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer.
        if unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETVNETHDRSZ,
                &hdr_sz as *const c_int,
            )
        } < 0
        {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TUNSETVNETHDRSZ: {e}")));
        }
        let end = ifr
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(ifr.name.len());
        let name = String::from_utf8_lossy(ifr.name.get(..end).unwrap_or(&[])).into_owned();
        let mut tap = TapBackend {
            fd,
            name,
            offloads: u32::MAX,
        };
        tap.apply_offloads(0)?;
        Ok(tap)
    }

    /// The interface name the kernel gave.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `TUN_F_*` flags in force.
    pub fn offloads(&self) -> libc::c_uint {
        self.offloads
    }

    fn apply_offloads(&mut self, flags: libc::c_uint) -> io::Result<()> {
        if flags == self.offloads {
            return Ok(());
        }
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        self.offloads = flags;
        Ok(())
    }

    /// `TUN_F_*` flags for what a driver with `negotiated` features takes.
    pub fn offload_flags(negotiated: Features) -> libc::c_uint {
        let mut f = 0;
        if negotiated.contains(Features::GUEST_CSUM) {
            f |= libc::TUN_F_CSUM;
            if negotiated.contains(Features::GUEST_TSO4) {
                f |= libc::TUN_F_TSO4;
            }
            if negotiated.contains(Features::GUEST_TSO6) {
                f |= libc::TUN_F_TSO6;
            }
            if negotiated.contains(Features::GUEST_ECN)
                && f & (libc::TUN_F_TSO4 | libc::TUN_F_TSO6) != 0
            {
                f |= libc::TUN_F_TSO_ECN;
            }
        }
        f
    }
}

impl Backend for TapBackend {
    fn caps(&self) -> BackendCaps {
        BackendCaps {
            tx_csum: true,
            tx_tso4: true,
            tx_tso6: true,
            tx_ecn: true,
            tx_ufo: false,
            rx_csum: true,
            rx_tso4: true,
            rx_tso6: true,
            rx_ecn: true,
            rx_ufo: false,
        }
    }

    fn set_offloads(&mut self, negotiated: Features) {
        let flags = Self::offload_flags(negotiated);
        match self.apply_offloads(flags) {
            Ok(()) => log::debug!("{}: TUNSETOFFLOAD {flags:#x}", self.name),
            Err(e) => log::warn!("{}: TUNSETOFFLOAD {flags:#x} failed: {e}", self.name),
        }
    }

    fn transmit(&mut self, hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        let h = hdr.emit_rx(0);
        let iov = [
            libc::iovec {
                iov_base: h.as_bytes().as_ptr() as *mut libc::c_void,
                iov_len: VNET_HDR_LEN,
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: both iovecs describe live, initialized buffers that the
        // kernel only reads.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.kind() {
                io::ErrorKind::WouldBlock => BackendError::Busy,
                _ => {
                    log::debug!("{}: write: {e}", self.name);
                    BackendError::Io
                }
            });
        }
        if n as usize != VNET_HDR_LEN + frame.len() {
            return Err(BackendError::Io);
        }
        Ok(())
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        let mut raw = [0u8; VNET_HDR_LEN];
        let iov = [
            libc::iovec {
                iov_base: raw.as_mut_ptr().cast(),
                iov_len: VNET_HDR_LEN,
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
        ];
        // SAFETY: both iovecs describe live buffers we own exclusively for
        // the duration of the call; the kernel writes at most their lengths.
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                _ => {
                    log::debug!("{}: read: {e}", self.name);
                    Err(BackendError::Io)
                }
            };
        }
        let len = (n as usize)
            .checked_sub(VNET_HDR_LEN)
            .ok_or(BackendError::Io)?;
        if len > buf.len() {
            return Err(BackendError::Refused);
        }
        let h = VirtioNetHdr::read_from_bytes(&raw).unwrap_or_default();
        let mut repr = NetHdrRepr::parse_tx(&h, len, TAP_ACCEPTS).map_err(|e| {
            log::debug!("{}: header from the kernel refused: {e:?}", self.name);
            BackendError::Refused
        })?;
        repr.data_valid =
            NetHdrFlags::from_bits_truncate(h.flags).contains(NetHdrFlags::DATA_VALID);
        Ok(Some(RxFrame { len, hdr: repr }))
    }
}

impl HostBackend for TapBackend {
    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn reset(&mut self) {
        self.set_offloads(Features::empty());
    }

    fn describe(&self) -> String {
        format!("tap:{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_flags_follow_the_guest_features() {
        assert_eq!(TapBackend::offload_flags(Features::empty()), 0);
        assert_eq!(
            TapBackend::offload_flags(Features::GUEST_TSO4),
            0,
            "TSO without GUEST_CSUM is nothing"
        );
        assert_eq!(
            TapBackend::offload_flags(
                Features::GUEST_CSUM
                    | Features::GUEST_TSO4
                    | Features::GUEST_TSO6
                    | Features::GUEST_ECN
            ),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN
        );
    }

    #[test]
    fn bad_names_are_refused_before_any_syscall() {
        for n in ["", "a/b", "0123456789abcdef"] {
            assert_eq!(
                TapBackend::open(n).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }
}
