//! Wire structures, as the guest lays them out in memory: explicit
//! little-endian zerocopy types, never native integers.

pub mod net_hdr;
pub mod ring;

pub use net_hdr::{GsoKind, HdrError, NetHdrFlags, NetHdrRepr, VirtioNetHdr, VirtioNetHdrLegacy};
pub use ring::{DescFlags, Descriptor, UsedElem};
