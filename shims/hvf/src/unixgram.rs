//! A [`Backend`] over a Unix datagram socket, speaking the datagram protocol
//! of vfkit, gvproxy (`--listen-vfkit unixgram://PATH`), vmnet-helper and
//! libkrun's `unixgram` backend.
//!
//! # The protocol (as implemented here)
//! * One Ethernet frame per datagram, both ways: destination MAC first, no
//!   length prefix, no virtio-net header, no FCS. (gvproxy's `vfkit`
//!   protocol is its only non-stream one: `Stream() == false`, no header.)
//! * The VMM binds its own socket to a path and `connect`s it to the
//!   proxy's path. gvproxy learns where to send by peeking at the source
//!   address of the first datagram it receives, so the VMM's socket **must**
//!   be bound to a path (an unnamed socket is refused: "vfkit socket address
//!   is empty").
//! * With [`Handshake::Vfkit`] the first datagram is the 4 bytes `VFKT`,
//!   as vfkit and libkrun (`NET_FLAG_VFKIT`) send. gvproxy consumes it if
//!   present and otherwise treats the first datagram as a frame, so
//!   [`Handshake::None`] works with it too; vmnet-helper expects none.
//! * Nothing else: no acknowledgement, no keep-alive. If the proxy goes
//!   away, sends fail with an I/O error.
//!
//! # Behaviour
//! The socket is non-blocking: [`Backend::receive`] returns `Ok(None)` when
//! no datagram is waiting, and a full socket buffer makes
//! [`Backend::transmit`] return [`BackendError::Busy`] (Linux reports
//! `EAGAIN`, macOS `ENOBUFS`); the device counts the frame as dropped.
//! A datagram longer than the receive buffer is detected (`MSG_TRUNC`) and
//! dropped whole, as the [`Backend`] contract requires; so is one shorter
//! than an Ethernet header. No offloads are offered (the protocol carries no
//! virtio-net header), so every frame is complete.
//!
//! On macOS the send buffer size of a Unix datagram socket is also the
//! largest datagram it can send; [`UnixgramBackend::connect`] raises it to
//! [`MAX_FRAME`] there, as libkrun does.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use socket2::{MaybeUninitSlice, Socket};
use virtnet::device::{Backend, BackendError, RxFrame, MAX_GSO_FRAME};
use virtnet::wire::NetHdrRepr;

/// The magic first datagram of the vfkit handshake.
pub const VFKIT_MAGIC: [u8; 4] = *b"VFKT";

/// The largest frame the backend sizes its socket for (the core's largest
/// frame, 64 KiB of IP plus headers).
pub const MAX_FRAME: usize = MAX_GSO_FRAME;

/// Receive buffer requested by [`UnixgramBackend::connect`] (best effort),
/// as gvproxy uses on its side.
pub const RECV_BUFFER: usize = 4 << 20;

/// Ethernet header length: shorter datagrams are dropped.
const ETH_HLEN: usize = 14;

/// How many unusable datagrams one `receive` call skips at most before it
/// reports `Ok(None)` (bounds the work a flooding peer can cause per call).
const MAX_SKIPPED: usize = 64;

/// The outcome of one `recvmsg`.
enum Recv {
    /// No datagram waiting.
    Empty,
    /// A datagram of this many bytes, complete in the buffer.
    Datagram(usize),
    /// A datagram longer than the buffer (cut off, consumed).
    Truncated,
}

/// What [`UnixgramBackend::connect`] sends before the first frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handshake {
    /// The 4-byte datagram `VFKT` (vfkit; gvproxy's `--listen-vfkit`).
    Vfkit,
    /// Nothing (vmnet-helper, or gvproxy without the magic).
    None,
}

/// Counters of a [`UnixgramBackend`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnixgramStats {
    /// Frames sent to the peer.
    pub tx_frames: u64,
    /// Frames not sent because the socket buffer was full.
    pub tx_busy: u64,
    /// Frames received from the peer and handed to the device.
    pub rx_frames: u64,
    /// Datagrams dropped because they did not fit the device's buffer.
    pub rx_oversize: u64,
    /// Datagrams dropped because they were shorter than an Ethernet header.
    pub rx_runt: u64,
}

/// A [`Backend`] exchanging one Ethernet frame per datagram with a peer over
/// a connected Unix datagram socket.
#[derive(Debug)]
pub struct UnixgramBackend {
    sock: Socket,
    stats: UnixgramStats,
}

impl UnixgramBackend {
    /// Wraps an already connected datagram socket (e.g. one end of
    /// `UnixDatagram::pair()`, or a socket the VMM's launcher passed in),
    /// making it non-blocking (and, on macOS, `SO_NOSIGPIPE`).
    ///
    /// # Errors
    /// The `fcntl`/`setsockopt` error.
    pub fn new(sock: UnixDatagram) -> io::Result<Self> {
        let sock = Socket::from(sock);
        sock.set_nonblocking(true)?;
        #[cfg(target_os = "macos")]
        sock.set_nosigpipe(true)?;
        Ok(UnixgramBackend {
            sock,
            stats: UnixgramStats::default(),
        })
    }

    /// Binds a socket to `local`, connects it to the proxy at `peer`, sends
    /// the `handshake` and returns the backend.
    ///
    /// A stale socket file at `local` (left by an earlier run) is removed
    /// first; any other kind of file there is an error. The caller removes
    /// `local` when done.
    ///
    /// # Errors
    /// Any socket error; `AlreadyExists` if `local` is not a socket.
    pub fn connect(local: &Path, peer: &Path, handshake: Handshake) -> io::Result<Self> {
        match std::fs::symlink_metadata(local) {
            Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(local)?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the local unixgram path exists and is not a socket",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let sock = UnixDatagram::bind(local)?;
        sock.connect(peer)?;
        if handshake == Handshake::Vfkit {
            sock.send(&VFKIT_MAGIC)?;
        }
        let this = Self::new(sock)?;
        #[cfg(target_os = "macos")]
        this.sock.set_send_buffer_size(MAX_FRAME)?;
        // Best effort: a smaller receive buffer only means more drops under
        // load (and some systems cap it).
        let _ = this.sock.set_recv_buffer_size(RECV_BUFFER);
        Ok(this)
    }

    /// The counters.
    pub fn stats(&self) -> &UnixgramStats {
        &self.stats
    }

    /// The socket (to register with kqueue/poll: readable means frames for
    /// the guest, so call the device's `poll`).
    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    /// Receives one datagram into `buf`.
    fn recv_one(&self, buf: &mut [u8]) -> io::Result<Recv> {
        // SAFETY: `u8` and `MaybeUninit<u8>` have the same layout, and the
        // slice only lives for this call. Viewing initialised bytes as maybe
        // uninitialised is sound as long as nothing writes uninitialised
        // bytes through the view: socket2 documents that `recv_vectored`
        // only hands the buffers to recvmsg(2), which writes received bytes.
        let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
        let mut bufs = [MaybeUninitSlice::new(uninit)];
        match self.sock.recv_vectored(&mut bufs) {
            Ok((_, flags)) if flags.is_truncated() => Ok(Recv::Truncated),
            Ok((len, _)) => Ok(Recv::Datagram(len)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Recv::Empty),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Recv::Empty),
            Err(e) => Err(e),
        }
    }
}

impl Backend for UnixgramBackend {
    fn transmit(&mut self, hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        // No offloads are offered, so the device never asks for one; refuse
        // rather than send a frame with a checksum or segmentation left to do.
        if hdr.csum.is_some() || hdr.gso.is_some() {
            return Err(BackendError::Refused);
        }
        match self.sock.send(frame) {
            Ok(n) if n == frame.len() => {
                self.stats.tx_frames = self.stats.tx_frames.saturating_add(1);
                Ok(())
            }
            Ok(_) => Err(BackendError::Io),
            Err(e) if is_busy(&e) => {
                self.stats.tx_busy = self.stats.tx_busy.saturating_add(1);
                Err(BackendError::Busy)
            }
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => Err(BackendError::Refused),
            Err(_) => Err(BackendError::Io),
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        for _ in 0..MAX_SKIPPED {
            match self.recv_one(buf) {
                Ok(Recv::Empty) => return Ok(None),
                Ok(Recv::Truncated) => {
                    self.stats.rx_oversize = self.stats.rx_oversize.saturating_add(1);
                }
                Ok(Recv::Datagram(len)) if len < ETH_HLEN => {
                    self.stats.rx_runt = self.stats.rx_runt.saturating_add(1);
                }
                Ok(Recv::Datagram(len)) => {
                    self.stats.rx_frames = self.stats.rx_frames.saturating_add(1);
                    return Ok(Some(RxFrame {
                        len,
                        hdr: NetHdrRepr::default(),
                    }));
                }
                Err(_) => return Err(BackendError::Io),
            }
        }
        Ok(None)
    }
}

impl AsFd for UnixgramBackend {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsRawFd for UnixgramBackend {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// A full socket buffer: `EAGAIN`/`EWOULDBLOCK` (Linux) or `ENOBUFS`
/// (macOS, for Unix datagram sockets).
fn is_busy(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}
