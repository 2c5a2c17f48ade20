//! virtnet's developer commands (`cargo xtask ...`) as a library: the test
//! suites, and the harnesses they share (a Linux guest under QEMU, network
//! namespaces, installers).

pub mod bench;
pub mod bench_dpdk;
pub mod bench_tap;
pub mod cpio;
pub mod ctx;
pub mod demo;
pub mod fuzz;
pub mod guest;
pub mod install;
pub mod netns;
pub mod qemu;
pub mod rig;
pub mod selftest;
pub mod suites;
pub mod util;
