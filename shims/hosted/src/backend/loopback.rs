//! The `loopback` backend: what the guest sends comes back to it.
//!
//! A bounded ring of frames allocated once ([`LoopbackBackend::new`]); a
//! frame sent when the ring is full is dropped ([`BackendError::Busy`],
//! counted by the device). No allocation after construction. The ring's
//! slots are lent to the device (`tx_buffer`, `rx_peek`), so a frame is
//! copied once from the guest's TX buffer into the ring and once from the
//! ring into its RX buffers.

use super::HostBackend;
use virtnet::device::{Backend, BackendCaps, BackendError, RxFrame};
use virtnet::wire::NetHdrRepr;

/// A ring of frames from the guest's TX queue to its RX queue.
#[derive(Debug)]
pub struct LoopbackBackend {
    storage: Vec<u8>,
    meta: Vec<(usize, NetHdrRepr)>,
    max_frame: usize,
    head: usize,
    count: usize,
}

impl LoopbackBackend {
    /// A ring of `capacity` frames of at most `max_frame` bytes each
    /// (both at least 1).
    pub fn new(capacity: usize, max_frame: usize) -> Self {
        let capacity = capacity.max(1);
        let max_frame = max_frame.max(1);
        LoopbackBackend {
            storage: vec![0; capacity.saturating_mul(max_frame)],
            meta: vec![(0, NetHdrRepr::default()); capacity],
            max_frame,
            head: 0,
            count: 0,
        }
    }

    /// Frames waiting to go back to the guest.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The ring slot a frame of `len` bytes goes to next, if it fits and
    /// the ring has room.
    fn tail_for(&self, len: usize) -> Option<usize> {
        let cap = self.meta.len();
        (len <= self.max_frame && self.count < cap).then(|| (self.head + self.count) % cap)
    }

    fn slot(&mut self, i: usize) -> &mut [u8] {
        let start = i.saturating_mul(self.max_frame);
        let end = start.saturating_add(self.max_frame);
        self.storage.get_mut(start..end).unwrap_or(&mut [])
    }
}

impl Backend for LoopbackBackend {
    /// Partial checksums and segmentation requests travel back unchanged;
    /// the device completes or drops what the guest cannot take.
    fn caps(&self) -> BackendCaps {
        BackendCaps {
            tx_csum: true,
            tx_tso4: true,
            tx_tso6: true,
            tx_ecn: true,
            rx_csum: true,
            rx_tso4: true,
            rx_tso6: true,
            rx_ecn: true,
            ..BackendCaps::default()
        }
    }

    /// Through the slot `tx_buffer` lends, as the device itself does.
    fn transmit(&mut self, hdr: &NetHdrRepr, frame: &[u8]) -> Result<(), BackendError> {
        if frame.len() > self.max_frame {
            return Err(BackendError::Refused);
        }
        let Some(dst) = self.tx_buffer(frame.len()) else {
            return Err(BackendError::Busy);
        };
        if let Some(dst) = dst.get_mut(..frame.len()) {
            dst.copy_from_slice(frame);
        }
        self.tx_commit(hdr, frame.len())
    }

    /// Lends the ring slot the next frame goes to: the device copies the
    /// guest's frame straight into it (one copy instead of two).
    fn tx_buffer(&mut self, len: usize) -> Option<&mut [u8]> {
        // None: `transmit` refuses it (counted by the device).
        let tail = self.tail_for(len)?;
        Some(self.slot(tail))
    }

    fn tx_commit(&mut self, hdr: &NetHdrRepr, len: usize) -> Result<(), BackendError> {
        let tail = self.tail_for(len).ok_or(BackendError::Refused)?;
        if let Some(m) = self.meta.get_mut(tail) {
            *m = (len, *hdr);
        }
        self.count += 1;
        Ok(())
    }

    /// Lends the oldest frame in place: the device copies it straight into
    /// the guest's buffers.
    fn rx_peek(&mut self) -> Option<(&[u8], NetHdrRepr)> {
        if self.count == 0 {
            return None;
        }
        let (len, hdr) = self.meta.get(self.head).copied()?;
        let start = self.head.saturating_mul(self.max_frame);
        let frame = self.storage.get(start..start.saturating_add(len))?;
        Some((frame, hdr))
    }

    fn rx_consume(&mut self) {
        if self.count > 0 {
            self.head = (self.head + 1) % self.meta.len();
            self.count -= 1;
        }
    }

    /// The frame `rx_peek` lends, copied out and consumed (also when `buf`
    /// is too small for it: it is dropped).
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxFrame>, BackendError> {
        let Some((frame, hdr)) = self.rx_peek() else {
            return Ok(None);
        };
        let len = frame.len();
        let r = match buf.get_mut(..len) {
            Some(dst) => {
                dst.copy_from_slice(frame);
                Ok(Some(RxFrame { len, hdr }))
            }
            None => Err(BackendError::Refused),
        };
        self.rx_consume();
        r
    }
}

impl HostBackend for LoopbackBackend {
    fn rx_ready(&self) -> bool {
        self.count > 0
    }

    fn reset(&mut self) {
        self.head = 0;
        self.count = 0;
    }

    fn describe(&self) -> String {
        format!("loopback ({} frames)", self.meta.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_in_order_and_the_ring_is_bounded() {
        let mut b = LoopbackBackend::new(2, 64);
        let h = NetHdrRepr::default();
        b.transmit(&h, &[1; 20]).unwrap();
        b.transmit(&h, &[2; 30]).unwrap();
        assert_eq!(b.transmit(&h, &[3; 10]), Err(BackendError::Busy));
        assert_eq!(b.transmit(&h, &[3; 65]), Err(BackendError::Refused));
        let mut buf = [0u8; 64];
        assert_eq!(b.receive(&mut buf).unwrap().unwrap().len, 20);
        assert_eq!(&buf[..20], &[1; 20]);
        b.transmit(&h, &[4; 64]).unwrap();
        assert_eq!(b.receive(&mut buf).unwrap().unwrap().len, 30);
        assert_eq!(&buf[..30], &[2; 30]);
        assert_eq!(b.receive(&mut buf).unwrap().unwrap().len, 64);
        assert_eq!(buf, [4; 64]);
        assert_eq!(b.receive(&mut buf).unwrap(), None);
        b.transmit(&h, &[5; 40]).unwrap();
        let mut small = [0u8; 10];
        assert_eq!(b.receive(&mut small), Err(BackendError::Refused));
        assert!(b.is_empty());
    }

    #[test]
    fn lent_slots_carry_frames_in_order_and_mix_with_copies() {
        let mut b = LoopbackBackend::new(2, 64);
        let h = NetHdrRepr {
            data_valid: true,
            ..NetHdrRepr::default()
        };
        assert!(b.rx_peek().is_none());
        assert!(b.tx_buffer(65).is_none(), "longer than a slot");
        b.tx_buffer(20).unwrap()[..20].copy_from_slice(&[1; 20]);
        b.tx_commit(&h, 20).unwrap();
        b.transmit(&NetHdrRepr::default(), &[2; 30]).unwrap();
        assert!(b.tx_buffer(10).is_none(), "full");
        assert_eq!(b.tx_commit(&h, 10), Err(BackendError::Refused));
        // Lent again until consumed.
        for _ in 0..2 {
            let (f, hdr) = b.rx_peek().unwrap();
            assert_eq!((f, hdr), (&[1u8; 20][..], h));
        }
        b.rx_consume();
        let mut buf = [0u8; 64];
        assert_eq!(b.rx_peek().unwrap().0, &[2u8; 30][..]);
        // `receive` takes the frame `rx_peek` lent.
        assert_eq!(b.receive(&mut buf).unwrap().unwrap().len, 30);
        assert!(b.rx_peek().is_none());
        b.rx_consume();
        assert!(b.is_empty(), "consuming nothing changes nothing");
    }
}
