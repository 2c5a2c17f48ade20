//! The virtio-net header (VIRTIO 1.2 §5.1.6) and its device-side validation
//! (§5.1.6.2.2).
//!
//! The header is read once from the chain into a local [`VirtioNetHdr`], then
//! validated into a [`NetHdrRepr`] against the negotiated features and the
//! frame length. Unknown flag bits are ignored (§5.1.6.2.2 "MUST ignore flag
//! bits that it does not recognize"). Invariants: I-HDR-1 .. I-HDR-5 in
//! `specs/04-net-header.md`.

use crate::features::Features;
use core::fmt;
use zerocopy::byteorder::little_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The 12-byte header used with VERSION_1 (or legacy MRG_RXBUF).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct VirtioNetHdr {
    /// [`NetHdrFlags`] bits.
    pub flags: u8,
    /// GSO type: [`GsoKind`] in the low 7 bits, ECN in bit 7.
    pub gso_type: u8,
    /// Length of the headers to replicate per GSO segment.
    pub hdr_len: U16,
    /// GSO segment payload size.
    pub gso_size: U16,
    /// Offset where checksumming starts.
    pub csum_start: U16,
    /// Offset after `csum_start` where the checksum is stored.
    pub csum_offset: U16,
    /// Number of merged receive buffers (RX only).
    pub num_buffers: U16,
}

const _: () = assert!(core::mem::size_of::<VirtioNetHdr>() == 12);

/// The 10-byte legacy header (legacy devices without MRG_RXBUF, §5.1.6.1).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct VirtioNetHdrLegacy {
    /// [`NetHdrFlags`] bits.
    pub flags: u8,
    /// GSO type.
    pub gso_type: u8,
    /// Header length.
    pub hdr_len: U16,
    /// GSO segment size.
    pub gso_size: U16,
    /// Checksum start.
    pub csum_start: U16,
    /// Checksum offset.
    pub csum_offset: U16,
}

const _: () = assert!(core::mem::size_of::<VirtioNetHdrLegacy>() == 10);

impl From<VirtioNetHdrLegacy> for VirtioNetHdr {
    fn from(h: VirtioNetHdrLegacy) -> Self {
        VirtioNetHdr {
            flags: h.flags,
            gso_type: h.gso_type,
            hdr_len: h.hdr_len,
            gso_size: h.gso_size,
            csum_start: h.csum_start,
            csum_offset: h.csum_offset,
            num_buffers: U16::new(0),
        }
    }
}

/// Header length for a negotiated feature set (§5.1.6.1): 12 bytes with
/// VERSION_1 or MRG_RXBUF, 20 with HASH_REPORT, else 10.
pub fn header_len(negotiated: Features) -> usize {
    if negotiated.contains(Features::HASH_REPORT) {
        20
    } else if negotiated.intersects(Features::VERSION_1 | Features::MRG_RXBUF) {
        12
    } else {
        10
    }
}

bitflags::bitflags! {
    /// Header flags (§5.1.6).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct NetHdrFlags: u8 {
        /// The checksum at csum_start/csum_offset must be completed.
        const NEEDS_CSUM = 1;
        /// The checksum is already validated (RX only).
        const DATA_VALID = 2;
        /// RSC information in the header (not negotiated by virtnet).
        const RSC_INFO = 4;
    }
}

/// GSO types (§5.1.6), without the ECN bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GsoKind {
    /// TCPv4 segmentation.
    TcpV4,
    /// UDP fragmentation offload.
    Udp,
    /// TCPv6 segmentation.
    TcpV6,
    /// UDP segmentation offload (USO).
    UdpL4,
}

impl GsoKind {
    /// Wire value of a GSO type without ECN: `0` means none.
    pub const NONE: u8 = 0;
    /// The ECN bit of `gso_type`.
    pub const ECN: u8 = 0x80;

    /// Decode the low 7 bits; `Ok(None)` for GSO_NONE.
    pub fn from_wire(v: u8) -> Result<Option<GsoKind>, HdrError> {
        match v & !Self::ECN {
            0 => Ok(None),
            1 => Ok(Some(GsoKind::TcpV4)),
            3 => Ok(Some(GsoKind::Udp)),
            4 => Ok(Some(GsoKind::TcpV6)),
            5 => Ok(Some(GsoKind::UdpL4)),
            other => Err(HdrError::UnknownGsoType(other)),
        }
    }

    /// Wire value without ECN.
    pub fn to_wire(self) -> u8 {
        match self {
            GsoKind::TcpV4 => 1,
            GsoKind::Udp => 3,
            GsoKind::TcpV6 => 4,
            GsoKind::UdpL4 => 5,
        }
    }

    /// The device-side (HOST_*) feature the driver needs to send this kind.
    pub fn host_feature(self) -> Features {
        match self {
            GsoKind::TcpV4 => Features::HOST_TSO4,
            GsoKind::Udp => Features::HOST_UFO,
            GsoKind::TcpV6 => Features::HOST_TSO6,
            GsoKind::UdpL4 => Features::HOST_USO,
        }
    }

    /// The driver-side (GUEST_*) feature the device needs to receive this kind.
    pub fn guest_feature(self) -> Features {
        match self {
            GsoKind::TcpV4 => Features::GUEST_TSO4,
            GsoKind::Udp => Features::GUEST_UFO,
            GsoKind::TcpV6 => Features::GUEST_TSO6,
            // Guest USO4/6 are not offered by virtnet.
            GsoKind::UdpL4 => Features::empty(),
        }
    }
}

/// Segmentation request of a validated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Gso {
    /// What to segment.
    pub kind: GsoKind,
    /// ECN bit set.
    pub ecn: bool,
    /// Payload bytes per segment (non-zero).
    pub size: u16,
    /// Header bytes (a hint; §5.1.6.2.2 says not to rely on it).
    pub hdr_len: u16,
}

/// Partial-checksum request of a validated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PartialCsum {
    /// Offset where checksumming starts.
    pub start: u16,
    /// Offset after `start` where the 16-bit checksum is stored.
    pub offset: u16,
}

/// A validated header: what the frame asks the device to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NetHdrRepr {
    /// Checksum to complete, if NEEDS_CSUM.
    pub csum: Option<PartialCsum>,
    /// Checksum already verified (DATA_VALID; only meaningful on RX).
    pub data_valid: bool,
    /// Segmentation request.
    pub gso: Option<Gso>,
}

/// Why a header was refused (the frame is dropped and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum HdrError {
    /// The chain is shorter than the negotiated header.
    Truncated,
    /// NEEDS_CSUM without CSUM negotiated.
    CsumNotNegotiated,
    /// csum_start/csum_offset point outside the frame.
    CsumOutOfFrame,
    /// gso_type is not a known type.
    UnknownGsoType(u8),
    /// gso_type needs a feature that was not negotiated.
    GsoNotNegotiated,
    /// GSO without NEEDS_CSUM.
    GsoWithoutCsum,
    /// gso_size is 0.
    GsoSizeZero,
    /// hdr_len is 0 or beyond the frame for a GSO frame.
    GsoBadHdrLen,
}

impl fmt::Display for HdrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HdrError::Truncated => f.write_str("chain shorter than the virtio-net header"),
            HdrError::CsumNotNegotiated => f.write_str("NEEDS_CSUM without CSUM negotiated"),
            HdrError::CsumOutOfFrame => f.write_str("csum_start/csum_offset outside the frame"),
            HdrError::UnknownGsoType(t) => write!(f, "unknown gso_type {t}"),
            HdrError::GsoNotNegotiated => f.write_str("gso_type not negotiated"),
            HdrError::GsoWithoutCsum => f.write_str("GSO without NEEDS_CSUM"),
            HdrError::GsoSizeZero => f.write_str("gso_size is 0"),
            HdrError::GsoBadHdrLen => f.write_str("hdr_len is 0 or beyond the frame"),
        }
    }
}

impl core::error::Error for HdrError {}

impl NetHdrRepr {
    /// Validate a header the driver sent (TX) against the negotiated
    /// features and the length of the frame that follows it
    /// (§5.1.6.2.2, device requirements).
    ///
    /// - Unknown flags, DATA_VALID and num_buffers are ignored.
    /// - Without NEEDS_CSUM, csum_start/csum_offset are never read.
    /// - A GSO frame must have NEEDS_CSUM, a negotiated type, gso_size > 0 and
    ///   0 < hdr_len <= frame length.
    #[inline]
    pub fn parse_tx(
        hdr: &VirtioNetHdr,
        frame_len: usize,
        negotiated: Features,
    ) -> Result<NetHdrRepr, HdrError> {
        // The usual header: no checksum to complete, no segmentation;
        // nothing else in it is read.
        if hdr.flags & NetHdrFlags::NEEDS_CSUM.bits() == 0 && hdr.gso_type == 0 {
            return Ok(NetHdrRepr::default());
        }
        Self::parse_tx_offloads(hdr, frame_len, negotiated)
    }

    /// The header of a frame that asks for no offload.
    pub const PLAIN: NetHdrRepr = NetHdrRepr {
        csum: None,
        data_valid: false,
        gso: None,
    };

    /// Whether TX header bytes ask for no offload: no NEEDS_CSUM, no GSO
    /// type (what [`NetHdrRepr::parse_tx_bytes`] turns into
    /// [`NetHdrRepr::PLAIN`] without reading further).
    #[inline]
    pub fn is_plain_tx(raw: &[u8; 12]) -> bool {
        let [flags, gso_type, ..] = *raw;
        flags & NetHdrFlags::NEEDS_CSUM.bits() == 0 && gso_type == 0
    }

    /// [`NetHdrRepr::parse_tx`] over the header's bytes as read from the
    /// chain. The usual header (no checksum, no segmentation) is told from
    /// its first two bytes alone; only a header asking for an offload is
    /// laid out as a [`VirtioNetHdr`].
    #[inline]
    pub fn parse_tx_bytes(
        raw: &[u8; 12],
        frame_len: usize,
        negotiated: Features,
    ) -> Result<NetHdrRepr, HdrError> {
        if Self::is_plain_tx(raw) {
            return Ok(Self::PLAIN);
        }
        Self::parse_tx_offload_bytes(raw, frame_len, negotiated)
    }

    /// [`NetHdrRepr::parse_tx_bytes`] for a header asking for an offload
    /// (`!is_plain_tx(raw)`); out of line, so the usual path never lays the
    /// bytes out as fields.
    #[inline(never)]
    pub(crate) fn parse_tx_offload_bytes(
        raw: &[u8; 12],
        frame_len: usize,
        negotiated: Features,
    ) -> Result<NetHdrRepr, HdrError> {
        let hdr = VirtioNetHdr::read_from_bytes(raw).unwrap_or_default();
        Self::parse_tx_offloads(&hdr, frame_len, negotiated)
    }

    /// [`NetHdrRepr::parse_tx`] for a header asking for a checksum or
    /// segmentation.
    fn parse_tx_offloads(
        hdr: &VirtioNetHdr,
        frame_len: usize,
        negotiated: Features,
    ) -> Result<NetHdrRepr, HdrError> {
        let flags = NetHdrFlags::from_bits_truncate(hdr.flags);
        let csum = if flags.contains(NetHdrFlags::NEEDS_CSUM) {
            if !negotiated.contains(Features::CSUM) {
                return Err(HdrError::CsumNotNegotiated);
            }
            let start = hdr.csum_start.get();
            let offset = hdr.csum_offset.get();
            let field_end = usize::from(start)
                .checked_add(usize::from(offset))
                .and_then(|v| v.checked_add(2))
                .ok_or(HdrError::CsumOutOfFrame)?;
            if usize::from(start) >= frame_len || field_end > frame_len {
                return Err(HdrError::CsumOutOfFrame);
            }
            Some(PartialCsum { start, offset })
        } else {
            None
        };
        let gso = match GsoKind::from_wire(hdr.gso_type)? {
            None => None,
            Some(kind) => {
                let ecn = hdr.gso_type & GsoKind::ECN != 0;
                if !negotiated.contains(kind.host_feature())
                    || (ecn && !negotiated.contains(Features::HOST_ECN))
                {
                    return Err(HdrError::GsoNotNegotiated);
                }
                if csum.is_none() {
                    return Err(HdrError::GsoWithoutCsum);
                }
                let size = hdr.gso_size.get();
                if size == 0 {
                    return Err(HdrError::GsoSizeZero);
                }
                let hdr_len = hdr.hdr_len.get();
                if hdr_len == 0 || usize::from(hdr_len) > frame_len {
                    return Err(HdrError::GsoBadHdrLen);
                }
                Some(Gso {
                    kind,
                    ecn,
                    size,
                    hdr_len,
                })
            }
        };
        Ok(NetHdrRepr {
            csum,
            data_valid: false,
            gso,
        })
    }

    /// Emit the header for a frame going to the driver (RX), with
    /// `num_buffers` (1 without MRG_RXBUF, §5.1.6.4).
    pub fn emit_rx(&self, num_buffers: u16) -> VirtioNetHdr {
        let mut flags = NetHdrFlags::empty();
        let (csum_start, csum_offset) = match self.csum {
            Some(c) => {
                flags |= NetHdrFlags::NEEDS_CSUM;
                (c.start, c.offset)
            }
            None => (0, 0),
        };
        if self.data_valid {
            flags |= NetHdrFlags::DATA_VALID;
        }
        let (gso_type, gso_size, hdr_len) = match self.gso {
            Some(g) => (
                g.kind.to_wire() | if g.ecn { GsoKind::ECN } else { 0 },
                g.size,
                g.hdr_len,
            ),
            None => (GsoKind::NONE, 0, 0),
        };
        VirtioNetHdr {
            flags: flags.bits(),
            gso_type,
            hdr_len: U16::new(hdr_len),
            gso_size: U16::new(gso_size),
            csum_start: U16::new(csum_start),
            csum_offset: U16::new(csum_offset),
            num_buffers: U16::new(num_buffers),
        }
    }

    /// [`NetHdrRepr::emit_rx`] as two little-endian words: the header's
    /// bytes 0..8 and 8..12 (see [`hdr_from_words`]). A copy of the header
    /// then moves two words that were stored whole; seven narrow stores
    /// read back as two wide loads defeat the CPU's store forwarding and
    /// stall each load (specs/10-performance.md, sixth round).
    #[inline]
    pub fn emit_rx_words(&self, num_buffers: u16) -> (u64, u32) {
        let h = self.emit_rx(num_buffers);
        let lo = u64::from(h.flags)
            | u64::from(h.gso_type) << 8
            | u64::from(h.hdr_len.get()) << 16
            | u64::from(h.gso_size.get()) << 32
            | u64::from(h.csum_start.get()) << 48;
        let hi = u32::from(h.csum_offset.get()) | u32::from(h.num_buffers.get()) << 16;
        (lo, hi)
    }

    /// The features the driver must have negotiated to receive this header
    /// unchanged: GUEST_CSUM for a partial checksum, GUEST_TSO*/UFO (and
    /// GUEST_ECN) for GSO.
    pub fn rx_requirements(&self) -> Features {
        let mut f = Features::empty();
        if self.csum.is_some() || self.data_valid {
            f |= Features::GUEST_CSUM;
        }
        if let Some(g) = self.gso {
            f |= g.kind.guest_feature();
            if g.ecn {
                f |= Features::GUEST_ECN;
            }
            if g.kind == GsoKind::UdpL4 {
                // Never deliverable: guest USO is not offered.
                f |= Features::HOST_USO;
            }
        }
        f
    }
}

/// Complete a partial checksum in software (§5.1.6.2: "the device MUST
/// complete the checksum"): the 16-bit ones'-complement sum of
/// `frame[start..]`, seeded with what the driver left in the checksum field
/// (the pseudo-header sum), stored at `start + offset`.
///
/// Returns `Err(CsumOutOfFrame)` if the field does not fit (never panics).
pub fn complete_checksum(frame: &mut [u8], csum: PartialCsum) -> Result<(), HdrError> {
    let start = usize::from(csum.start);
    let at = start
        .checked_add(usize::from(csum.offset))
        .ok_or(HdrError::CsumOutOfFrame)?;
    let at_end = at.checked_add(2).ok_or(HdrError::CsumOutOfFrame)?;
    if at_end > frame.len() || start >= frame.len() {
        return Err(HdrError::CsumOutOfFrame);
    }
    let region = frame.get(start..).ok_or(HdrError::CsumOutOfFrame)?;
    let sum = ones_complement_sum(region);
    let folded = !sum;
    let field = frame.get_mut(at..at_end).ok_or(HdrError::CsumOutOfFrame)?;
    field.copy_from_slice(&folded.to_be_bytes());
    Ok(())
}

/// RFC 1071 ones'-complement sum of `data` (big-endian 16-bit words), folded.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let [a, b] = c {
            acc = acc.wrapping_add(u64::from(u16::from_be_bytes([*a, *b])));
        }
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u64::from(u16::from_be_bytes([*last, 0])));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff).wrapping_add(acc >> 16);
    }
    acc as u16
}

/// The 12 header bytes of [`NetHdrRepr::emit_rx_words`]'s two words.
#[inline]
pub fn hdr_from_words((lo, hi): (u64, u32)) -> [u8; 12] {
    let [b0, b1, b2, b3, b4, b5, b6, b7] = lo.to_le_bytes();
    let [b8, b9, b10, b11] = hi.to_le_bytes();
    [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11]
}

#[cfg(test)]
mod tests {
    use super::*;

    static HDR_BYTES: [u8; 12] = [
        0x01, // NEEDS_CSUM
        0x81, // TCPv4 | ECN
        0x36, 0x00, // hdr_len 54
        0xa8, 0x05, // gso_size 1448
        0x22, 0x00, // csum_start 34
        0x10, 0x00, // csum_offset 16
        0x02, 0x00, // num_buffers 2
    ];

    #[test]
    fn net_hdr_golden_bytes_decode_and_encode() {
        let h = VirtioNetHdr::read_from_bytes(&HDR_BYTES[..]).unwrap();
        assert_eq!(h.flags, 1);
        assert_eq!(h.gso_type, 0x81);
        assert_eq!(h.hdr_len.get(), 54);
        assert_eq!(h.gso_size.get(), 1448);
        assert_eq!(h.csum_start.get(), 34);
        assert_eq!(h.csum_offset.get(), 16);
        assert_eq!(h.num_buffers.get(), 2);
        let repr = NetHdrRepr {
            csum: Some(PartialCsum {
                start: 34,
                offset: 16,
            }),
            data_valid: false,
            gso: Some(Gso {
                kind: GsoKind::TcpV4,
                ecn: true,
                size: 1448,
                hdr_len: 54,
            }),
        };
        assert_eq!(repr.emit_rx(2).as_bytes(), &HDR_BYTES[..]);
    }

    #[test]
    fn legacy_header_is_ten_bytes_and_converts() {
        let l = VirtioNetHdrLegacy::read_from_bytes(&HDR_BYTES[..10]).unwrap();
        let h: VirtioNetHdr = l.into();
        assert_eq!(h.csum_offset.get(), 16);
        assert_eq!(h.num_buffers.get(), 0);
    }

    /// I-HDR-1 / case 39: the header size follows the negotiated features.
    #[test]
    fn header_size_follows_negotiated_features() {
        assert_eq!(header_len(Features::VERSION_1), 12);
        assert_eq!(header_len(Features::MRG_RXBUF), 12);
        assert_eq!(header_len(Features::empty()), 10);
        assert_eq!(header_len(Features::VERSION_1 | Features::HASH_REPORT), 20);
    }

    fn hdr(flags: u8, gso: u8, hdr_len: u16, gso_size: u16, cs: u16, co: u16) -> VirtioNetHdr {
        VirtioNetHdr {
            flags,
            gso_type: gso,
            hdr_len: U16::new(hdr_len),
            gso_size: U16::new(gso_size),
            csum_start: U16::new(cs),
            csum_offset: U16::new(co),
            num_buffers: U16::new(0),
        }
    }

    const ALL: Features = Features::all();

    /// The byte-level parse (the device's TX path) agrees with
    /// `parse_tx` on every header: plain, offloads, refused ones, and
    /// every flags byte with the GSO types that matter.
    #[test]
    fn parse_tx_bytes_agrees_with_parse_tx() {
        let mut headers = std::vec![
            hdr(0, 0, 0, 0, 0, 0),
            hdr(0, 0, 54, 1448, 34, 16),
            hdr(1, 0, 0, 0, 34, 16),
            hdr(1, 4, 54, 1448, 34, 16),
            hdr(1, 0x81, 54, 1448, 34, 16),
            hdr(1, 1, 54, 0, 34, 16),
            hdr(1, 1, 0, 1448, 34, 16),
            hdr(1, 0, 0, 0, 2000, 16),
            hdr(0, 1, 54, 1448, 34, 16),
        ];
        for flags in 0..=255u8 {
            for gso in [0u8, 1, 3, 4, 5, 0x80, 0x81, 0x7f, 0xff] {
                headers.push(hdr(flags, gso, 54, 1448, 34, 16));
            }
        }
        for h in headers {
            let raw: [u8; 12] = h.as_bytes().try_into().unwrap();
            for negotiated in [ALL, Features::VERSION_1, Features::CSUM] {
                for len in [60usize, 100, 2000] {
                    assert_eq!(
                        NetHdrRepr::parse_tx_bytes(&raw, len, negotiated),
                        NetHdrRepr::parse_tx(&h, len, negotiated),
                        "{h:?} len {len} {negotiated:?}"
                    );
                }
            }
            assert_eq!(
                NetHdrRepr::is_plain_tx(&raw),
                NetHdrRepr::parse_tx(&h, 2000, ALL) == Ok(NetHdrRepr::PLAIN)
                    && h.flags & 1 == 0
                    && h.gso_type == 0
            );
        }
    }

    /// The header as two words is the header's bytes: every field lands
    /// where `emit_rx` puts it.
    #[test]
    fn emit_rx_words_are_the_header_bytes() {
        let reprs = [
            NetHdrRepr::PLAIN,
            NetHdrRepr {
                data_valid: true,
                ..NetHdrRepr::PLAIN
            },
            NetHdrRepr::parse_tx(
                &VirtioNetHdr::read_from_bytes(&HDR_BYTES[..]).unwrap(),
                2000,
                ALL,
            )
            .unwrap(),
            NetHdrRepr {
                csum: Some(PartialCsum {
                    start: 0xfedc,
                    offset: 0xba98,
                }),
                data_valid: false,
                gso: Some(Gso {
                    kind: GsoKind::TcpV6,
                    ecn: true,
                    size: 0x7654,
                    hdr_len: 0x3210,
                }),
            },
        ];
        for r in reprs {
            for n in [0u16, 1, 2, 0x1234, u16::MAX] {
                assert_eq!(
                    hdr_from_words(r.emit_rx_words(n)).as_slice(),
                    r.emit_rx(n).as_bytes(),
                    "{r:?} num_buffers {n}"
                );
            }
        }
    }

    /// Case 40: num_buffers, DATA_VALID and unknown flags are ignored on TX.
    #[test]
    fn tx_ignores_num_buffers_data_valid_and_unknown_flags() {
        let mut h = hdr(0xFE, 0, 0, 0, 0xFFFF, 0xFFFF);
        h.num_buffers = U16::new(77);
        let r = NetHdrRepr::parse_tx(&h, 60, ALL).unwrap();
        assert_eq!(r, NetHdrRepr::default());
    }

    /// Case 40: NEEDS_CSUM without CSUM negotiated is dropped.
    #[test]
    fn needs_csum_without_csum_negotiated_is_refused() {
        let h = hdr(1, 0, 0, 0, 14, 16);
        assert_eq!(
            NetHdrRepr::parse_tx(&h, 100, Features::VERSION_1),
            Err(HdrError::CsumNotNegotiated)
        );
    }

    /// Case 41: csum fields outside the frame are refused; without
    /// NEEDS_CSUM they are never used.
    #[test]
    fn csum_fields_outside_the_frame_are_refused() {
        for (cs, co, len) in [
            (100, 0, 100),
            (90, 9, 100),
            (0, 0xFFFF, 100),
            (0xFFFF, 0xFFFF, 70000),
        ] {
            let h = hdr(1, 0, 0, 0, cs, co);
            assert_eq!(
                NetHdrRepr::parse_tx(&h, len, ALL),
                Err(HdrError::CsumOutOfFrame),
                "{cs} {co}"
            );
        }
        let ok = hdr(1, 0, 0, 0, 90, 8);
        assert!(NetHdrRepr::parse_tx(&ok, 100, ALL).is_ok());
        let ignored = hdr(0, 0, 0, 0, 0xFFFF, 0xFFFF);
        assert_eq!(NetHdrRepr::parse_tx(&ignored, 100, ALL).unwrap().csum, None);
    }

    /// Case 42: bad GSO fields are refused; a valid GSO frame whose last
    /// segment would be 1 byte is accepted.
    #[test]
    fn bad_gso_fields_are_refused_and_odd_tail_accepted() {
        let base = Features::VERSION_1 | Features::CSUM | Features::HOST_TSO4;
        // Not negotiated: TSO6, UFO, ECN.
        assert_eq!(
            NetHdrRepr::parse_tx(&hdr(1, 4, 54, 1448, 34, 16), 2000, base),
            Err(HdrError::GsoNotNegotiated)
        );
        assert_eq!(
            NetHdrRepr::parse_tx(&hdr(1, 3, 42, 1448, 34, 6), 2000, base),
            Err(HdrError::GsoNotNegotiated)
        );
        assert_eq!(
            NetHdrRepr::parse_tx(&hdr(1, 0x81, 54, 1448, 34, 16), 2000, base),
            Err(HdrError::GsoNotNegotiated)
        );
        // Unknown type.
        assert_eq!(
            NetHdrRepr::parse_tx(&hdr(1, 2, 54, 1448, 34, 16), 2000, ALL),
            Err(HdrError::UnknownGsoType(2))
        );
        assert_eq!(
            NetHdrRepr::parse_tx(&hdr(1, 0x7F, 54, 1448, 34, 16), 2000, ALL),
            Err(HdrError::UnknownGsoType(0x7F))
        );
        // Without NEEDS_CSUM.
        assert_eq!(
            NetHdrRepr::parse_tx(&hdr(0, 1, 54, 1448, 34, 16), 2000, base),
            Err(HdrError::GsoWithoutCsum)
        );
        // gso_size 0.
        assert_eq!(
            NetHdrRepr::parse_tx(&hdr(1, 1, 54, 0, 34, 16), 2000, base),
            Err(HdrError::GsoSizeZero)
        );
        // hdr_len 0, > len, 0xFFFF.
        for hl in [0u16, 2001, 0xFFFF] {
            assert_eq!(
                NetHdrRepr::parse_tx(&hdr(1, 1, hl, 1448, 34, 16), 2000, base),
                Err(HdrError::GsoBadHdrLen)
            );
        }
        // 54 + 1448 + 1 bytes: the last segment carries 1 byte.
        let r = NetHdrRepr::parse_tx(&hdr(1, 1, 54, 1448, 34, 16), 54 + 1448 + 1, base).unwrap();
        assert_eq!(r.gso.unwrap().kind, GsoKind::TcpV4);
    }

    #[test]
    fn software_checksum_matches_rfc1071_example() {
        // RFC 1071 §3 example words: 0001 f203 f4f5 f6f7 -> sum 0xddf2.
        assert_eq!(
            ones_complement_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
        let mut frame = [0u8; 10];
        frame[..8].copy_from_slice(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        // Checksum field at offset 8 (after the data), seeded with 0.
        complete_checksum(
            &mut frame,
            PartialCsum {
                start: 0,
                offset: 8,
            },
        )
        .unwrap();
        assert_eq!(u16::from_be_bytes([frame[8], frame[9]]), !0xddf2u16);
        // Verifying: the sum over everything including the checksum is 0xffff.
        assert_eq!(ones_complement_sum(&frame), 0xffff);
        assert!(complete_checksum(
            &mut frame,
            PartialCsum {
                start: 0,
                offset: 9
            }
        )
        .is_err());
    }
}
