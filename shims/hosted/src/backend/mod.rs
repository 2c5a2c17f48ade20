//! Host backends: where the frames the guest sends go, and where the frames
//! it receives come from.
//!
//! Each implements the core's [`virtnet::device::Backend`] (the data path)
//! and [`HostBackend`] (what the worker thread needs to wait on it).
//! [`AnyBackend`] picks one at run time from a [`BackendSpec`] such as
//! `tap:tap0`, `loopback`, `null` or `stream:/run/passt.sock`.

mod loopback;
mod null;
mod stream;
mod tap;

pub use loopback::LoopbackBackend;
pub use null::NullBackend;
pub use stream::{StreamBackend, MAX_STREAM_FRAME, SEND_BUFFER};
pub use tap::{TapBackend, VNET_HDR_LEN};

use std::fmt;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::str::FromStr;

use virtnet::device::{Backend, BackendCaps, BackendError, RxFrame};
use virtnet::features::Features;
use virtnet::wire::NetHdrRepr;

/// What the vhost-user worker needs from a backend besides the data path.
pub trait HostBackend: Backend + Send {
    /// A file descriptor that becomes readable when a frame is waiting.
    fn rx_fd(&self) -> Option<RawFd> {
        None
    }

    /// Frames are waiting without any fd saying so (loopback, or frames a
    /// read already buffered).
    fn rx_ready(&self) -> bool {
        false
    }

    /// Output is buffered and waits for the peer to take it.
    fn tx_pending(&self) -> bool {
        false
    }

    /// Try to push out buffered output.
    fn flush(&mut self) {}

    /// The frontend went away: forget what belonged to that connection
    /// (queued frames, offload settings). The backend itself stays open.
    fn reset(&mut self) {}

    /// A short description for logs (`tap:tap0`).
    fn describe(&self) -> String;
}

/// A backend chosen on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSpec {
    /// `tap:IFNAME`.
    Tap(String),
    /// `loopback`.
    Loopback,
    /// `null`.
    Null,
    /// `stream:PATH`.
    Stream(PathBuf),
}

impl FromStr for BackendSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "loopback" => Ok(BackendSpec::Loopback),
            None if s == "null" => Ok(BackendSpec::Null),
            Some(("tap", name)) if !name.is_empty() => Ok(BackendSpec::Tap(name.into())),
            Some(("stream", path)) if !path.is_empty() => Ok(BackendSpec::Stream(path.into())),
            _ => Err(format!(
                "unknown backend {s:?}: expected tap:IFNAME, loopback, null or stream:PATH"
            )),
        }
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendSpec::Tap(n) => write!(f, "tap:{n}"),
            BackendSpec::Loopback => f.write_str("loopback"),
            BackendSpec::Null => f.write_str("null"),
            BackendSpec::Stream(p) => write!(f, "stream:{}", p.display()),
        }
    }
}

/// Frames the loopback ring holds.
pub const LOOPBACK_FRAMES: usize = 256;

/// One of the four backends.
#[derive(Debug)]
pub enum AnyBackend {
    /// A TAP interface.
    Tap(TapBackend),
    /// Guest to guest.
    Loopback(LoopbackBackend),
    /// A sink.
    Null(NullBackend),
    /// A `-netdev stream` peer.
    Stream(StreamBackend),
}

impl AnyBackend {
    /// Open the backend `spec` names. `max_frame` bounds the loopback's
    /// frames (the device's pool slot size).
    pub fn open(spec: &BackendSpec, max_frame: usize) -> std::io::Result<Self> {
        Ok(match spec {
            BackendSpec::Tap(name) => AnyBackend::Tap(TapBackend::open(name).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot open TAP {name}: {e}"))
            })?),
            BackendSpec::Loopback => {
                AnyBackend::Loopback(LoopbackBackend::new(LOOPBACK_FRAMES, max_frame))
            }
            BackendSpec::Null => AnyBackend::Null(NullBackend::new()),
            BackendSpec::Stream(p) => {
                AnyBackend::Stream(StreamBackend::connect(p).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot connect stream socket: {e}"))
                })?)
            }
        })
    }
}

macro_rules! each {
    ($self:expr, $b:ident => $e:expr) => {
        match $self {
            AnyBackend::Tap($b) => $e,
            AnyBackend::Loopback($b) => $e,
            AnyBackend::Null($b) => $e,
            AnyBackend::Stream($b) => $e,
        }
    };
}

impl Backend for AnyBackend {
    fn caps(&self) -> BackendCaps {
        each!(self, b => b.caps())
    }
    fn set_offloads(&mut self, negotiated: Features) {
        each!(self, b => b.set_offloads(negotiated))
    }
    #[inline]
    fn transmit(&mut self, hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        each!(self, b => b.transmit(hdr, frame))
    }
    #[inline]
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        each!(self, b => b.receive(buf))
    }
    #[inline]
    fn tx_buffer(&mut self, len: usize) -> Option<&mut [u8]> {
        each!(self, b => b.tx_buffer(len))
    }
    #[inline]
    fn tx_commit(&mut self, hdr: &NetHdrRepr, len: usize) -> Result<(), BackendError> {
        each!(self, b => b.tx_commit(hdr, len))
    }
    #[inline]
    fn rx_peek(&mut self) -> Option<(&[u8], NetHdrRepr)> {
        each!(self, b => b.rx_peek())
    }
    #[inline]
    fn rx_consume(&mut self) {
        each!(self, b => b.rx_consume())
    }
}

impl HostBackend for AnyBackend {
    fn rx_fd(&self) -> Option<RawFd> {
        each!(self, b => b.rx_fd())
    }
    fn rx_ready(&self) -> bool {
        each!(self, b => b.rx_ready())
    }
    fn tx_pending(&self) -> bool {
        each!(self, b => b.tx_pending())
    }
    fn flush(&mut self) {
        each!(self, b => b.flush())
    }
    fn reset(&mut self) {
        each!(self, b => b.reset())
    }
    fn describe(&self) -> String {
        each!(self, b => b.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        for s in ["tap:tap0", "loopback", "null", "stream:/tmp/x.sock"] {
            assert_eq!(s.parse::<BackendSpec>().unwrap().to_string(), s);
        }
        for bad in [
            "",
            "tap",
            "tap:",
            "stream:",
            "loop",
            "udp:1.2.3.4",
            "null:x",
        ] {
            assert!(bad.parse::<BackendSpec>().is_err(), "{bad}");
        }
    }
}
