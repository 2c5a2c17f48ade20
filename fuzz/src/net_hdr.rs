//! Target `net_hdr`: the virtio-net header alone (VIRTIO 1.2 §5.1.6).
//!
//! The input is a raw header, a frame, a negotiated feature set, a
//! num_buffers value and a header the backend might produce.
//!
//! Oracles (specs/09-fuzzing.md): `NetHdrRepr::parse_tx` accepts exactly
//! the headers §5.1.6.2.2 allows, as re-derived here (checksum inside the
//! frame and negotiated, GSO negotiated with NEEDS_CSUM, a non-zero size
//! and 0 < hdr_len ≤ frame length; unknown flags, DATA_VALID and
//! num_buffers ignored); `complete_checksum` succeeds on every accepted
//! request and stores the reference checksum, touching no other byte, and
//! fails without touching anything on a request outside the frame;
//! `ones_complement_sum` equals the reference sum; `emit_rx` then
//! `parse_tx` gives back the same header (the round trip), with
//! num_buffers as given; `header_len` is 10, 12 or 20.

use arbitrary::Arbitrary;
use virtnet::features::Features;
use virtnet::wire::net_hdr::{
    complete_checksum, header_len, ones_complement_sum, GsoKind, HdrError, PartialCsum,
};
use virtnet::wire::{NetHdrRepr, VirtioNetHdr, VirtioNetHdrLegacy};
use zerocopy::{FromBytes, IntoBytes};

use crate::enc_struct;
use crate::encode::{Bytes, Enc};
use crate::net::{ref_checksum, ref_sum, RxHdr};

/// The `net_hdr` target's input.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// The 12 header bytes as the driver wrote them.
    pub hdr: [u8; 12],
    /// Negotiated features.
    pub features: u64,
    /// num_buffers for `emit_rx`.
    pub num_buffers: u16,
    /// A header the backend produces, for the RX round trip.
    pub rx: RxHdr,
    /// The frame.
    pub frame: Bytes,
}
enc_struct!(Input {
    hdr,
    features,
    num_buffers,
    rx,
    frame
});

impl Input {
    /// The encoded input (a corpus file).
    pub fn encode(&self) -> Vec<u8> {
        Enc::of(self)
    }
}

/// What §5.1.6.2.2 allows, derived here from the raw bytes.
fn expected(h: &[u8; 12], len: usize, f: Features) -> Result<(), &'static str> {
    let flags = h[0];
    let gso = h[1];
    let hdr_len = u16::from_le_bytes([h[2], h[3]]);
    let gso_size = u16::from_le_bytes([h[4], h[5]]);
    let start = usize::from(u16::from_le_bytes([h[6], h[7]]));
    let offset = usize::from(u16::from_le_bytes([h[8], h[9]]));
    let csum = flags & 1 != 0;
    if csum {
        if !f.contains(Features::CSUM) {
            return Err("csum not negotiated");
        }
        if start >= len || start + offset + 2 > len {
            return Err("csum outside the frame");
        }
    }
    let kind = gso & 0x7f;
    let need = match kind {
        0 => return Ok(()),
        1 => Features::HOST_TSO4,
        3 => Features::HOST_UFO,
        4 => Features::HOST_TSO6,
        5 => Features::HOST_USO,
        _ => return Err("unknown gso type"),
    };
    if !f.contains(need) || (gso & 0x80 != 0 && !f.contains(Features::HOST_ECN)) {
        return Err("gso not negotiated");
    }
    if !csum {
        return Err("gso without csum");
    }
    if gso_size == 0 {
        return Err("gso size 0");
    }
    if hdr_len == 0 || usize::from(hdr_len) > len {
        return Err("bad hdr_len");
    }
    Ok(())
}

/// Run one input; panics on an oracle failure.
pub fn run(input: &Input) {
    let f = Features::from_bits_retain(input.features);
    assert!(matches!(header_len(f), 10 | 12 | 20));
    let frame = &input.frame.0;
    let raw = VirtioNetHdr::read_from_bytes(&input.hdr).expect("12 bytes");
    let legacy = VirtioNetHdrLegacy::read_from_bytes(&input.hdr[..10]).expect("10 bytes");
    let from_legacy = VirtioNetHdr::from(legacy);
    assert_eq!(from_legacy.as_bytes()[..10], input.hdr[..10]);
    assert_eq!(from_legacy.num_buffers.get(), 0);

    assert_eq!(
        ref_sum(frame),
        ones_complement_sum(frame),
        "ones_complement_sum"
    );

    let parsed = NetHdrRepr::parse_tx(&raw, frame.len(), f);
    let want = expected(&input.hdr, frame.len(), f);
    assert_eq!(
        parsed.is_ok(),
        want.is_ok(),
        "parse_tx {parsed:?}, expected {want:?}"
    );
    if let Ok(repr) = parsed {
        assert!(!repr.data_valid);
        assert_eq!(repr.csum.is_some(), input.hdr[0] & 1 != 0);
        if let Some(g) = repr.gso {
            assert_eq!(
                g.kind.to_wire() | if g.ecn { GsoKind::ECN } else { 0 },
                input.hdr[1]
            );
        }
        // Checksum completion on an accepted request.
        if let Some(c) = repr.csum {
            let mut out = frame.clone();
            assert_eq!(complete_checksum(&mut out, c), Ok(()));
            let at = usize::from(c.start) + usize::from(c.offset);
            assert_eq!(out[at..at + 2], ref_checksum(frame, c).to_be_bytes());
            assert_eq!(out[..at], frame[..at]);
            assert_eq!(out[at + 2..], frame[at + 2..]);
        }
        // emit_rx then parse_tx: the same request.
        let emitted = repr.emit_rx(input.num_buffers);
        assert_eq!(emitted.num_buffers.get(), input.num_buffers);
        assert_eq!(NetHdrRepr::parse_tx(&emitted, frame.len(), f), Ok(repr));
    }
    // Checksum requests straight from the raw fields, in or out of range.
    let c = PartialCsum {
        start: raw.csum_start.get(),
        offset: raw.csum_offset.get(),
    };
    let mut out = frame.clone();
    let fits = usize::from(c.start) < frame.len()
        && usize::from(c.start) + usize::from(c.offset) + 2 <= frame.len();
    match complete_checksum(&mut out, c) {
        Ok(()) => assert!(fits),
        Err(e) => {
            assert!(!fits);
            assert_eq!(e, HdrError::CsumOutOfFrame);
            assert_eq!(&out, frame, "a refused completion changed the frame");
        }
    }
    // An RX header: emit_rx carries exactly the request.
    let rx = input.rx.repr();
    let e = rx.emit_rx(input.num_buffers);
    assert_eq!(e.flags & 1 != 0, rx.csum.is_some());
    assert_eq!(e.flags & 2 != 0, rx.data_valid);
    assert_eq!(e.gso_type == 0, rx.gso.is_none());
    if let Some(c) = rx.csum {
        assert_eq!(
            (e.csum_start.get(), e.csum_offset.get()),
            (c.start, c.offset)
        );
    }
    if let Some(g) = rx.gso {
        assert_eq!((e.gso_size.get(), e.hdr_len.get()), (g.size, g.hdr_len));
        assert_eq!(e.gso_type & 0x80 != 0, g.ecn);
    }
}
