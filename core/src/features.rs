//! Feature bits (VIRTIO 1.2 §6 reserved bits and §5.1.3 network-device bits).

bitflags::bitflags! {
    /// A 64-bit feature set: offered by the device, or negotiated.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Features: u64 {
        /// Device handles packets with partial checksum (§5.1.3).
        const CSUM = 1 << 0;
        /// Driver handles packets with partial checksum.
        const GUEST_CSUM = 1 << 1;
        /// Control-channel offload reconfiguration (not offered by virtnet).
        const CTRL_GUEST_OFFLOADS = 1 << 2;
        /// Device reports its maximum MTU in config space.
        const MTU = 1 << 3;
        /// Device has a given MAC address in config space.
        const MAC = 1 << 5;
        /// Driver can receive TSOv4.
        const GUEST_TSO4 = 1 << 7;
        /// Driver can receive TSOv6.
        const GUEST_TSO6 = 1 << 8;
        /// Driver can receive TSO with ECN.
        const GUEST_ECN = 1 << 9;
        /// Driver can receive UFO.
        const GUEST_UFO = 1 << 10;
        /// Device can receive TSOv4.
        const HOST_TSO4 = 1 << 11;
        /// Device can receive TSOv6.
        const HOST_TSO6 = 1 << 12;
        /// Device can receive TSO with ECN.
        const HOST_ECN = 1 << 13;
        /// Device can receive UFO.
        const HOST_UFO = 1 << 14;
        /// Driver can merge receive buffers (§5.1.6.3.1).
        const MRG_RXBUF = 1 << 15;
        /// Configuration status field is available.
        const STATUS = 1 << 16;
        /// Control channel (not offered by virtnet).
        const CTRL_VQ = 1 << 17;
        /// Multiqueue (not offered by the core device).
        const MQ = 1 << 22;
        /// Device can receive USO packets (not offered).
        const HOST_USO = 1 << 56;
        /// Hash report in the header (not offered; 20-byte header).
        const HASH_REPORT = 1 << 57;
        /// Driver provides an exact hdr_len (not offered).
        const GUEST_HDRLEN = 1 << 59;
        /// Indirect descriptors (§2.7.5.3).
        const RING_INDIRECT_DESC = 1 << 28;
        /// used_event / avail_event notification suppression (§2.7.7, §2.7.10).
        const RING_EVENT_IDX = 1 << 29;
        /// Compliance with VIRTIO 1.x (§6); virtnet requires it.
        const VERSION_1 = 1 << 32;
        /// Device is behind an IOMMU / platform access rules (not offered).
        const ACCESS_PLATFORM = 1 << 33;
        /// Packed virtqueue layout (§2.8; not offered yet).
        const RING_PACKED = 1 << 34;
        /// In-order completion (not offered).
        const IN_ORDER = 1 << 35;
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Features {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Features({=u64:#x})", self.bits())
    }
}
