//! Device counters, readable by the embedder at any time.

use core::fmt;

/// Packet, byte and drop counters of one device. Drops are counted by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NetStats {
    /// Frames the guest sent that reached the backend or the interceptor.
    pub tx_packets: u64,
    /// Their bytes (without the virtio-net header).
    pub tx_bytes: u64,
    /// Frames delivered to the guest.
    pub rx_packets: u64,
    /// Their bytes (without the virtio-net header).
    pub rx_bytes: u64,
    /// TX chains refused by the chain walk (returned with len 0).
    pub tx_malformed_chains: u64,
    /// TX frames shorter than the header + an Ethernet header, or with
    /// writable buffers.
    pub tx_malformed_frames: u64,
    /// TX frames whose header failed validation (§5.1.6.2.2).
    pub tx_bad_header: u64,
    /// TX frames larger than a pool slot.
    pub tx_too_big: u64,
    /// TX frames claimed by the interceptor.
    pub tx_intercepted: u64,
    /// TX frames the backend refused or failed.
    pub tx_backend_errors: u64,
    /// TX checksums completed in software.
    pub tx_sw_checksums: u64,
    /// RX chains refused (malformed, read-only, smaller than the header).
    pub rx_malformed_chains: u64,
    /// RX frames dropped because they did not fit the guest's buffer
    /// (no MRG_RXBUF) or needed more buffers than a queue holds.
    pub rx_too_big: u64,
    /// RX frames dropped because they carried offloads the driver did not
    /// negotiate and could not be fixed up in software.
    pub rx_offload_dropped: u64,
    /// RX frames that came from the interceptor.
    pub rx_intercepted: u64,
    /// Backend receive errors.
    pub rx_backend_errors: u64,
    /// Times an RX frame had to wait for guest buffers.
    pub rx_waits_for_buffers: u64,
    /// Queues that broke (DEVICE_NEEDS_RESET).
    pub queue_errors: u64,
    /// Used-buffer notifications sent.
    pub notifications: u64,
    /// Used-buffer notifications the driver suppressed.
    pub notifications_suppressed: u64,
}

impl NetStats {
    /// All TX drops.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_malformed_chains
            .saturating_add(self.tx_malformed_frames)
            .saturating_add(self.tx_bad_header)
            .saturating_add(self.tx_too_big)
            .saturating_add(self.tx_backend_errors)
    }

    /// All RX drops.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_too_big
            .saturating_add(self.rx_offload_dropped)
            .saturating_add(self.rx_backend_errors)
    }
}

impl fmt::Display for NetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tx {} pkts {} bytes (dropped {}: malformed chains {}, malformed frames {}, bad header {}, too big {}, backend {}; intercepted {}, sw csum {}); \
             rx {} pkts {} bytes (dropped {}: too big {}, offload {}, backend {}; malformed chains {}, intercepted {}, waits {}); \
             queue errors {}, notifications {} (suppressed {})",
            self.tx_packets, self.tx_bytes, self.tx_dropped(), self.tx_malformed_chains, self.tx_malformed_frames,
            self.tx_bad_header, self.tx_too_big, self.tx_backend_errors, self.tx_intercepted, self.tx_sw_checksums,
            self.rx_packets, self.rx_bytes, self.rx_dropped(), self.rx_too_big, self.rx_offload_dropped,
            self.rx_backend_errors, self.rx_malformed_chains, self.rx_intercepted, self.rx_waits_for_buffers,
            self.queue_errors, self.notifications, self.notifications_suppressed
        )
    }
}
