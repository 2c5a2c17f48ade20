//! Split-ring structures (VIRTIO 1.2 §2.7.5, §2.7.6, §2.7.8).

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// A descriptor-table entry (§2.7.5): 16 bytes.
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
pub struct Descriptor {
    /// Guest-physical buffer address.
    pub addr: U64,
    /// Buffer length in bytes.
    pub len: U32,
    /// [`DescFlags`] bits.
    pub flags: U16,
    /// Next descriptor index when `NEXT` is set.
    pub next: U16,
}

const _: () = assert!(core::mem::size_of::<Descriptor>() == 16);

impl Descriptor {
    /// Size of one entry in bytes.
    pub const SIZE: u64 = 16;

    /// Build a descriptor (used by test drivers and golden tests).
    pub fn new(addr: u64, len: u32, flags: DescFlags, next: u16) -> Self {
        Descriptor {
            addr: U64::new(addr),
            len: U32::new(len),
            flags: U16::new(flags.bits()),
            next: U16::new(next),
        }
    }
}

bitflags::bitflags! {
    /// Descriptor flags (§2.7.5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DescFlags: u16 {
        /// The chain continues at `next`.
        const NEXT = 1;
        /// The buffer is device-writable (otherwise device-readable).
        const WRITE = 2;
        /// The buffer holds an indirect descriptor table (§2.7.5.3).
        const INDIRECT = 4;
    }
}

/// A used-ring element (§2.7.8): 8 bytes.
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
pub struct UsedElem {
    /// Head index of the completed chain.
    pub id: U32,
    /// Bytes written into the chain's device-writable buffers.
    pub len: U32,
}

const _: () = assert!(core::mem::size_of::<UsedElem>() == 8);

/// Available-ring flag: the driver asks for no used-buffer notifications
/// (§2.7.7), ignored when EVENT_IDX is negotiated.
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used-ring flag: the device asks for no available-buffer notifications
/// (§2.7.10).
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

/// Alignment the descriptor table needs (§2.7, table "Virtqueue Part Alignment").
pub const DESC_ALIGN: u64 = 16;
/// Alignment the available ring needs.
pub const AVAIL_ALIGN: u64 = 2;
/// Alignment the used ring needs.
pub const USED_ALIGN: u64 = 4;

/// Bytes of the descriptor table for `size` entries.
pub const fn desc_table_bytes(size: u16) -> u64 {
    (size as u64).saturating_mul(16)
}

/// Bytes of the available ring for `size` entries: flags, idx, ring,
/// used_event (§2.7.6).
pub const fn avail_ring_bytes(size: u16) -> u64 {
    (size as u64).saturating_mul(2).saturating_add(6)
}

/// Bytes of the used ring for `size` entries: flags, idx, ring, avail_event
/// (§2.7.8).
pub const fn used_ring_bytes(size: u16) -> u64 {
    (size as u64).saturating_mul(8).saturating_add(6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    static DESC_BYTES: [u8; 16] = [
        0x00, 0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // addr 0x1_0000_1000
        0xea, 0x05, 0x00, 0x00, // len 1514
        0x03, 0x00, // NEXT | WRITE
        0x07, 0x00, // next 7
    ];

    #[test]
    fn descriptor_golden_bytes() {
        let d = Descriptor::read_from_bytes(&DESC_BYTES[..]).unwrap();
        assert_eq!(d.addr.get(), 0x1_0000_1000);
        assert_eq!(d.len.get(), 1514);
        assert_eq!(
            DescFlags::from_bits(d.flags.get()),
            Some(DescFlags::NEXT | DescFlags::WRITE)
        );
        assert_eq!(d.next.get(), 7);
        let back = Descriptor::new(0x1_0000_1000, 1514, DescFlags::NEXT | DescFlags::WRITE, 7);
        assert_eq!(back.as_bytes(), &DESC_BYTES[..]);
        assert_eq!(offset_of!(Descriptor, len), 8);
        assert_eq!(offset_of!(Descriptor, flags), 12);
        assert_eq!(offset_of!(Descriptor, next), 14);
    }

    #[test]
    fn used_elem_golden_bytes() {
        let e = UsedElem {
            id: U32::new(0x0102),
            len: U32::new(72),
        };
        assert_eq!(e.as_bytes(), &[0x02, 0x01, 0, 0, 72, 0, 0, 0]);
    }

    #[test]
    fn ring_sizes_follow_the_spec() {
        assert_eq!(desc_table_bytes(256), 4096);
        assert_eq!(avail_ring_bytes(256), 518);
        assert_eq!(used_ring_bytes(256), 2054);
        assert_eq!(used_ring_bytes(32768), 6 + 8 * 32768);
    }
}
