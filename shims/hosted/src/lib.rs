//! # virtnet-hosted: virtnet as a vhost-user-net backend on Linux
//!
//! Any VMM that speaks vhost-user (QEMU, cloud-hypervisor, crosvm) or
//! DPDK's virtio-user driver can use virtnet's device through this crate:
//!
//! - [`memory`]: guest memory from the frontend's memory table (shared
//!   `mmap`s of the fds it sends) over the core's region memory, and the
//!   translation of its ring addresses;
//! - [`backend`]: where frames go — a TAP interface with `IFF_VNET_HDR`
//!   offloads, `loopback`, `null`, or a `-netdev stream` peer such as passt;
//! - [`device`]: the vhost-user request handler (rust-vmm's `vhost` crate
//!   parses the protocol) around the core's `NetDevice`;
//! - [`server`]: the listening socket, one frontend at a time, and the
//!   queue-pair worker thread (event-driven, or busy-polling).
//!
//! The `virtnet-vhost-user` binary puts these together. Design and
//! invariants (I-HOST-*): `specs/08-hosted.md`.
#![deny(missing_docs)]

pub mod backend;
pub mod device;
pub mod memory;
pub mod server;

pub use backend::{AnyBackend, BackendSpec, HostBackend};
pub use device::DeviceState;
pub use memory::{GuestMemoryMap, MemoryError, TableEntry};
pub use server::{bind, BindError, Server, ServerConfig, ServerHandle, DEFAULT_BUDGET};

/// Pool slot size that lets the device offer TSO and checksum offloads:
/// a 64 KiB GSO frame plus Ethernet and virtio-net headers, rounded up
/// (at least [`virtnet::device::MAX_GSO_FRAME`]).
pub const BIG_SLOT: usize = 65562;

const _: () = assert!(BIG_SLOT >= virtnet::device::MAX_GSO_FRAME);
