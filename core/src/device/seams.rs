//! The seams an embedder plugs into the device: the host backend, the frame
//! interceptor, and the notifier.

use crate::wire::NetHdrRepr;
use core::fmt;

/// Offloads a backend can take (guest → host) and give (host → guest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BackendCaps {
    /// Accepts frames whose checksum is still partial (csum_start/offset);
    /// otherwise the device completes it in software.
    pub tx_csum: bool,
    /// Accepts TCPv4 segmentation requests.
    pub tx_tso4: bool,
    /// Accepts TCPv6 segmentation requests.
    pub tx_tso6: bool,
    /// Accepts UDP fragmentation requests.
    pub tx_ufo: bool,
    /// Accepts the ECN bit with TSO.
    pub tx_ecn: bool,
    /// May produce frames with a partial checksum or DATA_VALID.
    pub rx_csum: bool,
    /// May produce TCPv4 GSO frames.
    pub rx_tso4: bool,
    /// May produce TCPv6 GSO frames.
    pub rx_tso6: bool,
    /// May produce UFO frames.
    pub rx_ufo: bool,
    /// May produce GSO frames with ECN.
    pub rx_ecn: bool,
}

/// Why a backend could not take or give a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BackendError {
    /// Temporarily unable (full queue); the frame is dropped and counted.
    Busy,
    /// The frame was refused (too big, offload not possible).
    Refused,
    /// The backend failed (I/O error); the frame is dropped and counted.
    Io,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendError::Busy => "backend busy",
            BackendError::Refused => "backend refused the frame",
            BackendError::Io => "backend I/O error",
        })
    }
}

impl core::error::Error for BackendError {}

/// A frame the backend produced: its length in the buffer it was given and
/// its offload metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RxFrame {
    /// Bytes written into the buffer.
    pub len: usize,
    /// Partial checksum / DATA_VALID / GSO of the frame.
    pub hdr: NetHdrRepr,
}

/// The host side of the network card. Works on borrowed buffers: the
/// device lends a frame to send and a buffer to receive into, or the
/// backend lends its own storage (`tx_buffer`/`rx_peek`) and saves a copy
/// per frame each way.
pub trait Backend {
    /// What offloads the backend can handle.
    fn caps(&self) -> BackendCaps {
        BackendCaps::default()
    }

    /// The offloads the driver negotiated (for backends that configure the
    /// host side, like TAP's `TUNSETOFFLOAD`). Called on activation.
    fn set_offloads(&mut self, _negotiated: crate::features::Features) {}

    /// Send one frame from the guest. `hdr` says what is still to be done
    /// (only offloads within [`Backend::caps`] appear here).
    fn transmit(&mut self, hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError>;

    /// Receive one frame for the guest into `buf`, or `Ok(None)` if none is
    /// waiting. Frames longer than `buf` must be dropped by the backend.
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError>;

    /// Lend a buffer of at least `len` bytes in the backend's own storage
    /// for the next frame from the guest (zero-copy TX): the device copies
    /// the frame from guest memory straight into it, completes a checksum
    /// there if needed, shows it to the interceptor, then calls
    /// [`Backend::tx_commit`], or nothing if the interceptor consumed it
    /// (the next `tx_buffer` may lend the same space again). The bytes the
    /// device wrote are a host-side snapshot: the guest cannot change them
    /// afterwards.
    ///
    /// `None` (the default, and the answer of a full backend) sends the
    /// frame the usual way: copied into a pool slot, then
    /// [`Backend::transmit`].
    fn tx_buffer(&mut self, len: usize) -> Option<&mut [u8]> {
        let _ = len;
        None
    }

    /// Send the first `len` bytes of the buffer [`Backend::tx_buffer`] lent
    /// last. Only called after a `tx_buffer` that returned a buffer of at
    /// least `len` bytes.
    fn tx_commit(&mut self, hdr: &NetHdrRepr, len: usize) -> Result<(), BackendError> {
        let _ = (hdr, len);
        Err(BackendError::Refused)
    }

    /// Lend the next frame for the guest from the backend's own storage
    /// without taking it (zero-copy RX): the device copies it straight into
    /// the guest's buffers and calls [`Backend::rx_consume`] once it was
    /// delivered or dropped. While the guest has no buffers the frame stays
    /// where it is, and the next `rx_peek` must lend the same frame again.
    ///
    /// `None` (the default) sends the device to [`Backend::receive`]. So
    /// does a frame whose offloads the driver did not negotiate: the device
    /// takes it with `receive` into a pool slot to fix it up there, so
    /// `receive` must return the frame `rx_peek` lent.
    fn rx_peek(&mut self) -> Option<(&[u8], NetHdrRepr)> {
        None
    }

    /// The device is done with the frame [`Backend::rx_peek`] lent.
    fn rx_consume(&mut self) {}
}

impl<B: Backend + ?Sized> Backend for &mut B {
    fn caps(&self) -> BackendCaps {
        (**self).caps()
    }
    fn set_offloads(&mut self, negotiated: crate::features::Features) {
        (**self).set_offloads(negotiated)
    }
    fn transmit(&mut self, hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        (**self).transmit(hdr, frame)
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        (**self).receive(buf)
    }
    fn tx_buffer(&mut self, len: usize) -> Option<&mut [u8]> {
        (**self).tx_buffer(len)
    }
    fn tx_commit(&mut self, hdr: &NetHdrRepr, len: usize) -> Result<(), BackendError> {
        (**self).tx_commit(hdr, len)
    }
    fn rx_peek(&mut self) -> Option<(&[u8], NetHdrRepr)> {
        (**self).rx_peek()
    }
    fn rx_consume(&mut self) {
        (**self).rx_consume()
    }
}

/// What an interceptor decided about a frame the guest sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    /// Not ours: send it to the backend.
    Pass,
    /// Claimed: it never reaches the backend.
    Consumed,
}

/// A hook in front of the backend, for in-VMM services (an MMDS-like
/// metadata service, ARP responders): it sees every frame the guest sends
/// first, and its own frames reach the guest before the backend's.
pub trait Interceptor {
    /// Look at a frame the guest sent.
    fn on_transmit(&mut self, frame: &[u8]) -> Verdict;

    /// A frame for the guest, written into `buf`, if the interceptor has one.
    fn poll_receive(&mut self, buf: &mut [u8]) -> Option<RxFrame>;
}

/// The interceptor that intercepts nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoInterceptor;

impl Interceptor for NoInterceptor {
    fn on_transmit(&mut self, _frame: &[u8]) -> Verdict {
        Verdict::Pass
    }
    fn poll_receive(&mut self, _buf: &mut [u8]) -> Option<RxFrame> {
        None
    }
}

/// How the device tells the driver something happened. The transport
/// implements it (virtio-mmio: InterruptStatus + an interrupt line;
/// vhost-user: the call eventfd).
pub trait Notifier {
    /// A used-buffer notification for `queue` (§2.3.2).
    fn used_buffer(&mut self, queue: u16);
    /// A configuration-change notification (§2.3.1), also sent when the
    /// device sets DEVICE_NEEDS_RESET.
    fn config_changed(&mut self);
}

impl<N: Notifier + ?Sized> Notifier for &mut N {
    fn used_buffer(&mut self, queue: u16) {
        (**self).used_buffer(queue)
    }
    fn config_changed(&mut self) {
        (**self).config_changed()
    }
}
