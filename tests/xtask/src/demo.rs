//! `cargo xtask demo`: boots a Linux guest whose network card is virtnet
//! and shows it working, step by step.
//!
//! It installs what is missing (QEMU 10 from bookworm-backports, the Debian
//! guest kernel, busybox-static, socat), builds `virtnet-vhost-user` and the
//! guest's initramfs, creates a network namespace with a TAP device,
//! starts the backend on that TAP, boots the Debian kernel under QEMU (TCG)
//! with virtio-net-pci on vhost-user, and shows: the features the guest's
//! driver and virtnet agreed on, ping both ways, a TCP transfer each way
//! with its throughput and SHA-256 on both ends, and the backend's counters.
//! Everything it starts is stopped and removed at the end, on error, and on
//! Ctrl-C. About a minute on an idle 2-core machine.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::ctx::Ctx;
use crate::guest::GuestAssets;
use crate::rig::{
    build_backend, build_initramfs, feature_names, install_interrupt_handler, wait_if_interrupted,
    Guest, LinuxRig, GUEST_ADDR, GUEST_MAC, HOST_ADDR, PREFIX, TAP,
};

/// MiB sent each way.
const MIB: u64 = 32;
/// The demo's network namespace (our pid is added).
const NETNS: &str = "virtnet-demo";

/// What each feature the demo can show means, in a few words.
const MEANINGS: &[(&str, &str)] = &[
    (
        "VERSION_1",
        "modern VIRTIO 1.x device (little-endian, 12-byte net header)",
    ),
    ("MAC", "the device tells the guest its MAC address"),
    ("STATUS", "the device reports link up/down"),
    ("MTU", "the device tells the guest its MTU"),
    (
        "CSUM",
        "the guest may send frames with the TCP/UDP checksum left to the host",
    ),
    (
        "GUEST_CSUM",
        "the host may deliver frames whose checksum is already verified or left partial",
    ),
    (
        "HOST_TSO4",
        "the guest may send TCP/IPv4 segments of up to 64 KiB (segmented by the host kernel)",
    ),
    ("HOST_TSO6", "the same for TCP/IPv6"),
    ("HOST_ECN", "... with ECN bits"),
    ("HOST_UFO", "the guest may send large UDP datagrams"),
    (
        "GUEST_TSO4",
        "the host may deliver TCP/IPv4 segments of up to 64 KiB to the guest",
    ),
    ("GUEST_TSO6", "the same for TCP/IPv6"),
    ("GUEST_ECN", "... with ECN bits"),
    ("GUEST_UFO", "the host may deliver large UDP datagrams"),
    (
        "MRG_RXBUF",
        "a received frame may span several guest buffers",
    ),
    (
        "RING_INDIRECT_DESC",
        "the guest may put a descriptor chain in a separate table",
    ),
    (
        "RING_EVENT_IDX",
        "both sides suppress notifications by ring index (fewer interrupts and kicks)",
    ),
];

/// Prints a step heading.
fn step(n: u32, of: u32, what: &str) {
    println!("\n==> [{n}/{of}] {what}");
}

/// `cargo xtask demo`.
pub fn demo(ctx: &Ctx) -> Result<()> {
    install_interrupt_handler();
    let r = run(ctx);
    if r.is_err() {
        // A Ctrl-C also reaches QEMU and the backend, which then fail the
        // step at hand: let the handler finish and exit instead.
        wait_if_interrupted();
    }
    r
}

/// The demo's steps.
fn run(ctx: &Ctx) -> Result<()> {
    let started = Instant::now();
    const STEPS: u32 = 7;

    step(
        1,
        STEPS,
        "Checking what the demo needs (installs what is missing)",
    );
    println!("    QEMU 10 (bookworm-backports), the Debian kernel package, busybox-static, socat");
    let assets = GuestAssets::ensure(&ctx.work_dir)?;
    println!("    guest kernel: Debian {}", assets.kernel_version());

    step(
        2,
        STEPS,
        "Building virtnet's vhost-user backend and the guest's initramfs",
    );
    let bin = build_backend(ctx)?;
    let initrd = build_initramfs(&assets)?;
    println!("    backend: {}", bin.display());
    println!(
        "    initramfs: {} (busybox, the virtio modules, tests/guest/vn.sh as /bin/vn)",
        initrd.path().display()
    );

    step(
        3,
        STEPS,
        &format!(
            "A network namespace with TAP {TAP} at {HOST_ADDR}/{PREFIX}; virtnet-vhost-user on that TAP"
        ),
    );
    let mut rig = LinuxRig::start(&bin, NETNS, &[], false)?;
    let netns = rig.ns.ns.name().to_string();
    println!("    namespace: {netns}");
    if let Some(l) = rig.backend.proc.output().lines().next() {
        println!("    {l}");
    }

    step(
        4,
        STEPS,
        "Booting Linux under QEMU (TCG), its virtio-net card served by virtnet over vhost-user",
    );
    let mut guest = Guest::boot(&assets, &initrd, &rig.socket, "", false)?;
    println!(
        "    the guest loaded virtio_net after {:.1} s",
        guest.vm.elapsed().as_secs_f64()
    );
    let up = guest.vn_ok(
        &format!("up {GUEST_ADDR}/{PREFIX}"),
        Duration::from_secs(30),
    )?;
    println!(
        "    guest eth0: {} at {GUEST_ADDR}/{PREFIX}, link {}",
        up.field("mac").unwrap_or(GUEST_MAC),
        up.field("operstate").unwrap_or("?")
    );

    step(
        5,
        STEPS,
        "Features negotiated between Linux's virtio_net and virtnet (from the backend's log)",
    );
    let negotiated = rig.backend.negotiated();
    let last = negotiated
        .last()
        .context("the backend logged no negotiated features")?;
    for name in feature_names(last) {
        let meaning = MEANINGS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, m)| *m);
        println!("    {name:<20} {meaning}");
    }
    if last.contains("VHOST_USER_F_PROTOCOL_FEATURES") {
        println!("    (+ VHOST_USER_F_PROTOCOL_FEATURES: the vhost-user protocol extensions)");
    }

    step(6, STEPS, "Traffic");
    guest.vn_ok(&format!("ping {HOST_ADDR} 3"), Duration::from_secs(30))?;
    println!("    ping guest -> {HOST_ADDR}: 3 of 3 replies");
    let (ok, text) = rig.ping_from_host(GUEST_ADDR, 3)?;
    ensure!(ok, "ping from the namespace to the guest failed:\n{text}");
    let rtt = text
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .unwrap_or("")
        .trim();
    println!("    ping {HOST_ADDR} -> guest: 3 of 3 replies ({rtt})");
    println!("    sending {MIB} MiB of random bytes namespace -> guest over TCP (socat -> busybox nc)...");
    let h2g = rig.host_to_guest(&mut guest, MIB)?;
    println!("    namespace -> guest: {}", h2g.summary());
    ensure!(h2g.intact(), "the transfer to the guest arrived corrupted");
    println!("    the guest sends the same bytes back (busybox nc -> socat)...");
    let g2h = rig.guest_to_host_echo(&mut guest, &h2g)?;
    println!("    guest -> namespace: {}", g2h.summary());
    ensure!(
        g2h.intact(),
        "the transfer from the guest arrived corrupted"
    );
    println!("    (QEMU emulates the guest's CPU in software (TCG): the guest, not virtnet, sets these rates)");

    step(7, STEPS, "Shutting down; the backend's counters");
    guest.vm.send_line("poweroff -f")?;
    guest.vm.wait_exit(Duration::from_secs(30))?;
    drop(guest);
    let c = rig.backend.stop()?;
    println!(
        "    guest -> host (TX queue): {} frames, {:.1} MiB, {} dropped",
        c.tx_packets,
        c.tx_bytes as f64 / (1 << 20) as f64,
        c.tx_dropped
    );
    println!(
        "    host -> guest (RX queue): {} frames, {:.1} MiB, {} dropped",
        c.rx_packets,
        c.rx_bytes as f64 / (1 << 20) as f64,
        c.rx_dropped
    );
    println!(
        "    average frame: {:.0} bytes out, {:.0} bytes in (above 1514: TSO/GSO segments passed whole)",
        c.tx_bytes as f64 / c.tx_packets.max(1) as f64,
        c.rx_bytes as f64 / c.rx_packets.max(1) as f64
    );
    if let Some(line) = rig
        .backend
        .proc
        .output()
        .lines()
        .rev()
        .find(|l| l.contains("stopped;"))
    {
        println!("    full counters: {}", line.trim());
    }
    drop(rig);
    println!(
        "\ndone in {:.0} s; QEMU, the backend and namespace {netns} are gone.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
