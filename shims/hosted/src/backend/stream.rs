//! The `stream:PATH` backend: frames over a Unix stream socket with QEMU's
//! `-netdev stream` framing (a 4-byte big-endian length, then the frame),
//! which passt speaks. The backend connects to PATH as a client, so no
//! privilege is needed.
//!
//! The framing has no room for a virtio-net header, so the backend takes no
//! offload: the device completes partial checksums before a frame gets here
//! and never offers segmentation with it.
//!
//! Both directions go through buffers allocated once: a receive buffer that
//! one `read` fills with as many frames as are waiting, and a bounded send
//! buffer that holds what a non-blocking `sendmsg` could not take (so a
//! frame is never cut; when the buffer is full the frame is dropped,
//! `Busy`).

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::HostBackend;
use virtnet::device::{Backend, BackendError, RxFrame};
use virtnet::wire::NetHdrRepr;

/// Largest frame accepted from the stream (QEMU's `NET_BUFSIZE`).
pub const MAX_STREAM_FRAME: usize = 4096 + 65536;
/// Bytes of send buffer for what the socket could not take at once.
pub const SEND_BUFFER: usize = 256 * 1024;

/// A Unix stream socket with length-prefixed frames.
#[derive(Debug)]
pub struct StreamBackend {
    sock: UnixStream,
    path: PathBuf,
    rx: Vec<u8>,
    rx_start: usize,
    rx_end: usize,
    tx: Vec<u8>,
    tx_start: usize,
    tx_end: usize,
    broken: bool,
}

impl StreamBackend {
    /// Connect to the stream socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Self> {
        let sock = UnixStream::connect(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Self::from_stream(sock, path.to_path_buf())
    }

    /// Use an already connected stream (`path` is for messages only).
    pub fn from_stream(sock: UnixStream, path: PathBuf) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        Ok(StreamBackend {
            sock,
            path,
            rx: vec![0; 2 * (4 + MAX_STREAM_FRAME)],
            rx_start: 0,
            rx_end: 0,
            tx: vec![0; SEND_BUFFER],
            tx_start: 0,
            tx_end: 0,
            broken: false,
        })
    }

    /// Whether the peer went away or broke the framing.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn fail(&mut self, why: &str) {
        if !self.broken {
            log::error!("stream {}: {why}; no more frames", self.path.display());
        }
        self.broken = true;
    }

    /// Send `bufs` with one `sendmsg` on `fd`; returns bytes taken (0 if
    /// it would block).
    fn send(fd: RawFd, bufs: &[&[u8]]) -> io::Result<usize> {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2];
        for (v, b) in iov.iter_mut().zip(bufs) {
            v.iov_base = b.as_ptr() as *mut libc::c_void;
            v.iov_len = b.len();
        }
        // SAFETY: an all-zero `msghdr` is a valid empty message.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = bufs.len().min(2) as _;
        // SAFETY: `msg` points at iovecs describing live buffers the kernel
        // only reads; MSG_NOSIGNAL turns a closed peer into EPIPE, not SIGPIPE.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    /// Push out what the send buffer holds. Returns whether it is empty.
    pub fn flush_pending(&mut self) -> Result<bool, BackendError> {
        while self.tx_start < self.tx_end {
            let pending = self.tx.get(self.tx_start..self.tx_end).unwrap_or(&[]);
            match Self::send(self.sock.as_raw_fd(), &[pending]) {
                Ok(0) => return Ok(false),
                Ok(n) => self.tx_start += n,
                Err(e) => {
                    self.fail(&format!("send: {e}"));
                    return Err(BackendError::Io);
                }
            }
        }
        self.tx_start = 0;
        self.tx_end = 0;
        Ok(true)
    }

    /// The length prefix of the next buffered frame, if 4 bytes are there.
    fn next_len(&self) -> Option<usize> {
        let h = self.rx.get(self.rx_start..self.rx_start + 4)?;
        if self.rx_end - self.rx_start < 4 {
            return None;
        }
        Some(u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize)
    }

    /// Queue `parts` (one frame) in the send buffer if it fits whole.
    fn buffer(&mut self, parts: &[&[u8]]) -> Result<(), BackendError> {
        let need: usize = parts.iter().map(|p| p.len()).sum();
        if self.tx_end + need > self.tx.len() {
            // Make room by moving the pending bytes to the front.
            self.tx.copy_within(self.tx_start..self.tx_end, 0);
            self.tx_end -= self.tx_start;
            self.tx_start = 0;
            if self.tx_end + need > self.tx.len() {
                return Err(BackendError::Busy);
            }
        }
        for p in parts {
            if let Some(dst) = self.tx.get_mut(self.tx_end..self.tx_end + p.len()) {
                dst.copy_from_slice(p);
            }
            self.tx_end += p.len();
        }
        Ok(())
    }
}

impl Backend for StreamBackend {
    fn transmit(&mut self, _hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        if self.broken {
            return Err(BackendError::Io);
        }
        let len = u32::try_from(frame.len()).map_err(|_| BackendError::Refused)?;
        let prefix = len.to_be_bytes();
        if self.tx_start < self.tx_end && !self.flush_pending()? {
            return self.buffer(&[&prefix, frame]);
        }
        let n = match Self::send(self.sock.as_raw_fd(), &[&prefix, frame]) {
            Ok(n) => n,
            Err(e) => {
                self.fail(&format!("send: {e}"));
                return Err(BackendError::Io);
            }
        };
        let total = 4 + frame.len();
        if n >= total {
            return Ok(());
        }
        // Keep the rest so the stream is never cut mid-frame.
        if n < 4 {
            let p = prefix.get(n..).unwrap_or(&[]);
            self.buffer(&[p, frame])
        } else {
            self.buffer(&[frame.get(n - 4..).unwrap_or(&[])])
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        if self.broken {
            return Ok(None);
        }
        // At most one read: the first pass looks for a complete frame in
        // the buffer, the second after reading.
        for pass in 0..2 {
            let have = self.rx_end - self.rx_start;
            if let Some(len) = self.next_len() {
                if len > MAX_STREAM_FRAME {
                    self.fail(&format!("frame length {len} is over {MAX_STREAM_FRAME}"));
                    return Err(BackendError::Io);
                }
                if have >= 4 + len {
                    let start = self.rx_start + 4;
                    self.rx_start = start + len;
                    if self.rx_start == self.rx_end {
                        self.rx_start = 0;
                        self.rx_end = 0;
                    }
                    let (Some(dst), Some(src)) =
                        (buf.get_mut(..len), self.rx.get(start..start + len))
                    else {
                        return Err(BackendError::Refused);
                    };
                    dst.copy_from_slice(src);
                    return Ok(Some(RxFrame {
                        len,
                        hdr: NetHdrRepr::default(),
                    }));
                }
            }
            if pass == 1 {
                break;
            }
            // Not a whole frame: make room at the end and read once.
            if self.rx_start > 0 {
                self.rx.copy_within(self.rx_start..self.rx_end, 0);
                self.rx_end -= self.rx_start;
                self.rx_start = 0;
            }
            let end = self.rx_end;
            let r = match self.rx.get_mut(end..) {
                Some(dst) => (&self.sock).read(dst),
                None => Ok(0),
            };
            match r {
                Ok(0) => {
                    self.fail("peer closed the connection");
                    return Ok(None);
                }
                Ok(n) => self.rx_end += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
                Err(e) => {
                    self.fail(&format!("read: {e}"));
                    return Err(BackendError::Io);
                }
            }
        }
        Ok(None)
    }
}

impl HostBackend for StreamBackend {
    fn rx_fd(&self) -> Option<RawFd> {
        (!self.broken).then(|| self.sock.as_raw_fd())
    }

    fn rx_ready(&self) -> bool {
        // A read can bring several frames: the rest wait in the buffer with
        // no fd event to announce them.
        self.next_len()
            .is_some_and(|len| self.rx_end - self.rx_start >= 4 + len)
    }

    fn tx_pending(&self) -> bool {
        !self.broken && self.tx_start < self.tx_end
    }

    fn flush(&mut self) {
        let _ = self.flush_pending();
    }

    fn describe(&self) -> String {
        format!("stream:{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn frames_cross_the_stream_in_both_directions() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut s = StreamBackend::from_stream(a, "pair".into()).unwrap();
        let h = NetHdrRepr::default();
        s.transmit(&h, &[7; 60]).unwrap();
        s.transmit(&h, &[8; 1514]).unwrap();
        let mut got = vec![0u8; 4 + 60 + 4 + 1514];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got[..4], &60u32.to_be_bytes());
        assert_eq!(&got[4..64], &[7; 60]);
        assert_eq!(&got[64..68], &1514u32.to_be_bytes());
        // Two frames in one write, the second split across two writes.
        let mut out = Vec::new();
        out.extend_from_slice(&3u32.to_be_bytes());
        out.extend_from_slice(b"abc");
        out.extend_from_slice(&5u32.to_be_bytes());
        out.extend_from_slice(b"de");
        b.write_all(&out).unwrap();
        let mut buf = [0u8; 100];
        let f = s.receive(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..f.len], b"abc");
        assert!(!s.rx_ready());
        assert_eq!(s.receive(&mut buf).unwrap(), None);
        b.write_all(b"fgh").unwrap();
        let f = s.receive(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..f.len], b"defgh");
        drop(b);
        assert_eq!(s.receive(&mut buf).unwrap(), None);
        assert!(s.is_broken());
        assert_eq!(s.transmit(&h, &[1; 60]), Err(BackendError::Io));
    }

    #[test]
    fn a_full_socket_buffers_whole_frames_and_never_cuts_one() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut s = StreamBackend::from_stream(a, "pair".into()).unwrap();
        let h = NetHdrRepr::default();
        let frame = [0x5a; 1500];
        let mut sent = 0usize;
        let mut busy = 0usize;
        for _ in 0..2000 {
            match s.transmit(&h, &frame) {
                Ok(()) => sent += 1,
                Err(BackendError::Busy) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(busy > 0, "the socket should have filled up");
        assert!(s.tx_pending());
        // Drain the peer while flushing: every frame arrives whole.
        b.set_nonblocking(false).unwrap();
        let mut received = 0usize;
        let mut hdr = [0u8; 4];
        let mut body = vec![0u8; 1500];
        while received < sent {
            s.flush();
            b.read_exact(&mut hdr).unwrap();
            assert_eq!(u32::from_be_bytes(hdr), 1500);
            b.read_exact(&mut body).unwrap();
            assert!(body.iter().all(|&x| x == 0x5a));
            received += 1;
        }
        assert!(!s.tx_pending());
    }
}
