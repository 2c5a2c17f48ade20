//! Device configuration, feature offer and negotiation (VIRTIO 1.2 §2.2,
//! §5.1.3, §5.1.3.1) and the config-space layout (§5.1.4).

use super::seams::BackendCaps;
use crate::features::Features;
use core::fmt;

/// Largest frame a TSO/UFO packet can be: 64 KiB of IP plus the Ethernet
/// and virtio-net headers (hostile-guest case 38).
pub const MAX_GSO_FRAME: usize = 65550;

/// What the embedder configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NetConfig {
    /// MAC address offered in config space (VIRTIO_NET_F_MAC), if any.
    pub mac: Option<[u8; 6]>,
    /// MTU offered in config space (VIRTIO_NET_F_MTU), if any.
    pub mtu: Option<u16>,
    /// Largest queue size the device accepts (power of two, ≤ 32768).
    pub queue_size_max: u16,
    /// Features the embedder is willing to offer. The device offers the
    /// part of this it can honour with its pool slot size and the backend's
    /// capabilities (see [`offerable`]).
    pub offer: Features,
    /// Initial link state.
    pub link_up: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            mac: None,
            mtu: None,
            queue_size_max: 256,
            offer: Features::VERSION_1
                | Features::MAC
                | Features::MTU
                | Features::STATUS
                | Features::MRG_RXBUF
                | Features::CSUM
                | Features::GUEST_CSUM
                | Features::HOST_TSO4
                | Features::HOST_TSO6
                | Features::HOST_ECN
                | Features::HOST_UFO
                | Features::GUEST_TSO4
                | Features::GUEST_TSO6
                | Features::GUEST_ECN
                | Features::GUEST_UFO
                | Features::RING_EVENT_IDX
                | Features::RING_INDIRECT_DESC,
            link_up: true,
        }
    }
}

/// The features virtnet can implement at all.
pub const SUPPORTED: Features = Features::VERSION_1
    .union(Features::MAC)
    .union(Features::MTU)
    .union(Features::STATUS)
    .union(Features::MRG_RXBUF)
    .union(Features::CSUM)
    .union(Features::GUEST_CSUM)
    .union(Features::HOST_TSO4)
    .union(Features::HOST_TSO6)
    .union(Features::HOST_ECN)
    .union(Features::HOST_UFO)
    .union(Features::GUEST_TSO4)
    .union(Features::GUEST_TSO6)
    .union(Features::GUEST_ECN)
    .union(Features::GUEST_UFO)
    .union(Features::RING_EVENT_IDX)
    .union(Features::RING_INDIRECT_DESC);

/// The feature set to offer: the embedder's wish, limited to what virtnet
/// supports, to what the slot size allows (segmentation offloads need
/// 64 KiB slots), to what the backend can take or give, and closed under the
/// §5.1.3.1 dependencies. VERSION_1 is always offered.
pub fn offerable(cfg: &NetConfig, slot_size: usize, caps: BackendCaps) -> Features {
    let mut f = (cfg.offer & SUPPORTED) | Features::VERSION_1;
    if cfg.mac.is_none() {
        f.remove(Features::MAC);
    }
    if cfg.mtu.is_none() {
        f.remove(Features::MTU);
    }
    let big = slot_size >= MAX_GSO_FRAME;
    let gates = [
        (Features::HOST_TSO4, big && caps.tx_tso4),
        (Features::HOST_TSO6, big && caps.tx_tso6),
        (Features::HOST_UFO, big && caps.tx_ufo),
        (Features::HOST_ECN, big && caps.tx_ecn),
        (Features::GUEST_TSO4, big && caps.rx_tso4),
        (Features::GUEST_TSO6, big && caps.rx_tso6),
        (Features::GUEST_UFO, big && caps.rx_ufo),
        (Features::GUEST_ECN, big && caps.rx_ecn),
    ];
    for (bit, ok) in gates {
        if !ok {
            f.remove(bit);
        }
    }
    without_orphans(f)
}

/// Remove every offload whose §5.1.3.1 prerequisite is missing:
/// GUEST_TSO4/TSO6/UFO without GUEST_CSUM, GUEST_ECN without GUEST_TSO4/6,
/// HOST_TSO4/TSO6/UFO without CSUM, HOST_ECN without HOST_TSO4/6.
///
/// Used to close an offer under the dependencies, and by transports without a
/// FEATURES_OK step (vhost-user) to treat orphaned acks as not negotiated.
pub fn without_orphans(f: Features) -> Features {
    let mut f = f;
    if !f.contains(Features::CSUM) {
        f.remove(Features::HOST_TSO4 | Features::HOST_TSO6 | Features::HOST_UFO);
    }
    if !f.intersects(Features::HOST_TSO4 | Features::HOST_TSO6) {
        f.remove(Features::HOST_ECN);
    }
    if !f.contains(Features::GUEST_CSUM) {
        f.remove(Features::GUEST_TSO4 | Features::GUEST_TSO6 | Features::GUEST_UFO);
    }
    if !f.intersects(Features::GUEST_TSO4 | Features::GUEST_TSO6) {
        f.remove(Features::GUEST_ECN);
    }
    f
}

/// Why a driver's feature set was refused (FEATURES_OK reads back 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FeatureError {
    /// Bits the device did not offer.
    NotOffered(u64),
    /// VERSION_1 is required (legacy is not supported).
    NoVersion1,
    /// A feature without its §5.1.3.1 prerequisite.
    MissingDependency {
        /// The feature.
        feature: u64,
        /// What it needs (any of these bits).
        needs: u64,
    },
}

impl fmt::Display for FeatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureError::NotOffered(b) => write!(f, "features {b:#x} were not offered"),
            FeatureError::NoVersion1 => f.write_str("VERSION_1 not accepted (legacy unsupported)"),
            FeatureError::MissingDependency { feature, needs } => {
                write!(f, "feature {feature:#x} requires one of {needs:#x}")
            }
        }
    }
}

impl core::error::Error for FeatureError {}

/// Check a driver's feature set against the offer and §5.1.3.1.
pub fn validate(driver: Features, offered: Features) -> Result<Features, FeatureError> {
    let extra = driver.bits() & !offered.bits();
    if extra != 0 {
        return Err(FeatureError::NotOffered(extra));
    }
    if !driver.contains(Features::VERSION_1) {
        return Err(FeatureError::NoVersion1);
    }
    let deps = [
        (Features::GUEST_TSO4, Features::GUEST_CSUM),
        (Features::GUEST_TSO6, Features::GUEST_CSUM),
        (Features::GUEST_UFO, Features::GUEST_CSUM),
        (
            Features::GUEST_ECN,
            Features::GUEST_TSO4.union(Features::GUEST_TSO6),
        ),
        (Features::HOST_TSO4, Features::CSUM),
        (Features::HOST_TSO6, Features::CSUM),
        (Features::HOST_UFO, Features::CSUM),
        (
            Features::HOST_ECN,
            Features::HOST_TSO4.union(Features::HOST_TSO6),
        ),
    ];
    for (feature, needs) in deps {
        if driver.contains(feature) && !driver.intersects(needs) {
            return Err(FeatureError::MissingDependency {
                feature: feature.bits(),
                needs: needs.bits(),
            });
        }
    }
    Ok(driver)
}

/// `VIRTIO_NET_S_LINK_UP` in the config `status` field.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;

/// Size of the config space virtnet exposes: mac, status,
/// max_virtqueue_pairs, mtu (§5.1.4).
pub const CONFIG_SPACE_SIZE: usize = 12;

/// Render the config space (§5.1.4) into `out`.
pub(crate) fn config_bytes(cfg: &NetConfig, link_up: bool) -> [u8; CONFIG_SPACE_SIZE] {
    let mut out = [0u8; CONFIG_SPACE_SIZE];
    let mac = cfg.mac.unwrap_or([0; 6]);
    let status = if link_up { VIRTIO_NET_S_LINK_UP } else { 0 };
    let mtu = cfg.mtu.unwrap_or(1500);
    let fields: [(&[u8], usize); 4] = [
        (&mac, 0),
        (&status.to_le_bytes(), 6),
        (&1u16.to_le_bytes(), 8),
        (&mtu.to_le_bytes(), 10),
    ];
    for (bytes, at) in fields {
        if let Some(dst) = out.get_mut(at..at.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    }
    out
}
