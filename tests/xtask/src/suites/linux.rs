//! `linux`: the Debian bookworm kernel's own virtio_net driver on
//! `virtnet-vhost-user --backend tap:…` (specs/08-hosted.md, "Real peers").
//!
//! Each scenario starts a fresh backend whose TAP sits in a network namespace
//! holding 10.77.0.1/24, boots the guest under QEMU (TCG, `-cpu max`) with
//! virtio-net-pci on vhost-user (memfd guest RAM), gives it 10.77.0.2/24 and
//! checks: the link comes up; the features the backend logged as negotiated
//! are the ones the scenario's QEMU options leave (so the scenario really
//! runs without, say, MRG_RXBUF); ping guest → namespace and namespace →
//! guest; 64 MiB of random bytes namespace → guest over TCP, then the
//! guest sends what it received back (busybox `nc` in the guest, `socat`
//! in the namespace), with the SHA-256 of each side equal each way; the guest powers off; the backend stops on SIGTERM
//! with exit 0 and counters showing at least 64 MiB each way through the
//! device, no dropped frame and no broken queue.
//!
//! Scenarios: QEMU's defaults; `mrg_rxbuf=off`; every checksum/TSO/UFO/ECN
//! offload off; `event_idx=off`; `indirect_desc=off`; and a reboot: the guest
//! reboots in the same QEMU (the device is reset and set up again on the same
//! vhost-user connection) and gets traffic again, then powers off, QEMU
//! exits, and a new QEMU connects to the same backend (a second connection)
//! and moves 64 MiB each way again.
//!
//! `VIRTNET_LINUX_ONLY=<part of a scenario name>` runs only the matching
//! scenarios (`reboot` for the last one).
//!
//! Runtime: about 3 minutes on 2 cores (each boot about 4 s under TCG; each
//! transfer a few seconds; figures are printed per transfer).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use super::{Ctx, Tally};
use crate::guest::{GuestAssets, Initramfs};
use crate::rig::{
    build_backend, build_initramfs, feature_names, install_interrupt_handler, Guest, LinuxRig,
    GUEST_ADDR, HOST_ADDR, PREFIX,
};

/// MiB moved each way per scenario.
const MIB: u64 = 64;
/// The namespace the suite creates, `<NETNS>-<pid>` (deleted again after
/// each scenario).
const NETNS: &str = "virtnet-linux";

/// A scenario: QEMU device options and what the negotiated features must
/// (not) hold then.
struct Scenario {
    name: &'static str,
    options: &'static str,
    present: &'static [&'static str],
    absent: &'static [&'static str],
}

/// Every offload QEMU's virtio-net can offer, off.
const OFFLOADS_OFF: &str = "csum=off,guest_csum=off,gso=off,host_tso4=off,host_tso6=off,host_ecn=off,host_ufo=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off";

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "QEMU defaults",
        options: "",
        present: &[
            "CSUM",
            "GUEST_CSUM",
            "HOST_TSO4",
            "GUEST_TSO4",
            "MRG_RXBUF",
            "RING_EVENT_IDX",
            "RING_INDIRECT_DESC",
            "VERSION_1",
        ],
        absent: &[],
    },
    Scenario {
        name: "mrg_rxbuf=off",
        options: "mrg_rxbuf=off",
        present: &["VERSION_1", "GUEST_TSO4"],
        absent: &["MRG_RXBUF"],
    },
    Scenario {
        name: "offloads off",
        options: OFFLOADS_OFF,
        present: &["VERSION_1"],
        absent: &[
            "CSUM",
            "GUEST_CSUM",
            "HOST_TSO4",
            "HOST_TSO6",
            "HOST_ECN",
            "HOST_UFO",
            "GUEST_TSO4",
            "GUEST_TSO6",
            "GUEST_ECN",
            "GUEST_UFO",
        ],
    },
    Scenario {
        name: "event_idx=off",
        options: "event_idx=off",
        present: &["VERSION_1"],
        absent: &["RING_EVENT_IDX"],
    },
    Scenario {
        name: "indirect_desc=off",
        options: "indirect_desc=off",
        present: &["VERSION_1"],
        absent: &["RING_INDIRECT_DESC"],
    },
];

/// Runs the suite.
pub fn run(ctx: &Ctx) -> Result<Tally> {
    install_interrupt_handler();
    let started = Instant::now();
    let assets = GuestAssets::ensure(&ctx.work_dir)?;
    let bin = build_backend(ctx)?;
    let initrd = build_initramfs(&assets)?;
    println!(
        "guest kernel {}; backend {}",
        assets.kernel_version(),
        bin.display()
    );
    let mut tally = Tally::default();
    // For working on one scenario: VIRTNET_LINUX_ONLY=<part of its name>.
    let only = std::env::var("VIRTNET_LINUX_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    for sc in SCENARIOS.iter().filter(|s| wanted(s.name)) {
        println!("--- scenario: {} ---", sc.name);
        let t = Instant::now();
        let r = scenario(&bin, &assets, &initrd, sc);
        report(&mut tally, &format!("linux: {}", sc.name), r, t);
    }
    if !wanted("reboot") {
        return Ok(tally);
    }
    println!("--- scenario: guest reboot, then a new QEMU ---");
    let t = Instant::now();
    let (reboot, reconnect) = reboot_and_reconnect(&bin, &assets, &initrd);
    report(
        &mut tally,
        "linux: guest reboot (reset on the same connection), traffic again",
        reboot,
        t,
    );
    report(
        &mut tally,
        "linux: new QEMU on the same backend (second connection), traffic again",
        reconnect,
        t,
    );
    println!("linux suite: {:.0} s", started.elapsed().as_secs_f64());
    Ok(tally)
}

/// Records a scenario's outcome, with its error if any.
fn report(tally: &mut Tally, name: &str, r: Result<()>, t: Instant) {
    if let Err(e) = &r {
        crate::rig::wait_if_interrupted();
        println!("error: {e:#}");
    }
    println!("({:.1} s)", t.elapsed().as_secs_f64());
    tally.record(name, r.is_ok());
}

/// Brings eth0 up, checks the negotiated features, pings both ways.
fn link_and_ping(rig: &LinuxRig, guest: &mut Guest, sc: Option<&Scenario>) -> Result<()> {
    let up = guest.vn_ok(
        &format!("up {GUEST_ADDR}/{PREFIX}"),
        Duration::from_secs(30),
    )?;
    println!(
        "link up: {} (guest mac {}, virtio feature bits {})",
        up.field("operstate").unwrap_or("?"),
        up.field("mac").unwrap_or("?"),
        up.field("features").unwrap_or("?")
    );
    let negotiated = rig.backend.negotiated();
    let last = negotiated
        .last()
        .context("the backend logged no `features negotiated` line")?;
    println!("backend: features negotiated: {last}");
    if let Some(sc) = sc {
        let names = feature_names(last);
        for want in sc.present {
            ensure!(
                names.iter().any(|n| n == want),
                "{want} was not negotiated: {last}"
            );
        }
        for unwanted in sc.absent {
            ensure!(
                !names.iter().any(|n| n == unwanted),
                "{unwanted} was negotiated although QEMU was told not to offer it: {last}"
            );
        }
    }
    guest.vn_ok(&format!("ping {HOST_ADDR} 3"), Duration::from_secs(30))?;
    println!("ping guest -> namespace: ok");
    let (ok, text) = rig.ping_from_host(GUEST_ADDR, 3)?;
    ensure!(ok, "ping namespace -> guest failed:\n{text}");
    let rtt = text
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .unwrap_or("")
        .trim();
    println!("ping namespace -> guest: ok ({rtt})");
    Ok(())
}

/// `mib` MiB of random bytes namespace -> guest, then the guest sends what
/// it received back; each side's SHA-256 compared with the other's.
fn bulk(rig: &mut LinuxRig, guest: &mut Guest, mib: u64) -> Result<()> {
    let h2g = rig.host_to_guest(guest, mib)?;
    println!("TCP namespace -> guest: {}", h2g.summary());
    ensure!(h2g.intact(), "namespace -> guest transfer corrupted");
    let g2h = rig.guest_to_host_echo(guest, &h2g)?;
    println!("TCP guest -> namespace: {}", g2h.summary());
    ensure!(g2h.intact(), "guest -> namespace transfer corrupted");
    Ok(())
}

/// Powers the guest off and waits for QEMU to exit.
fn power_off(guest: &mut Guest) -> Result<()> {
    guest.vm.send_line("poweroff -f")?;
    guest.vm.wait_exit(Duration::from_secs(30))?;
    Ok(())
}

/// Stops the backend and checks its counters: at least `mib` MiB each way,
/// no drops, no broken queue.
fn check_counters(rig: &mut LinuxRig, mib: u64) -> Result<()> {
    let c = rig.backend.stop()?;
    println!(
        "backend counters: tx {} frames / {} bytes, rx {} frames / {} bytes, dropped tx {} rx {}, queue errors {}",
        c.tx_packets, c.tx_bytes, c.rx_packets, c.rx_bytes, c.tx_dropped, c.rx_dropped, c.queue_errors
    );
    ensure!(
        c.tx_bytes >= mib << 20 && c.rx_bytes >= mib << 20,
        "the device moved less than {mib} MiB each way: {c:?}"
    );
    ensure!(
        c.tx_dropped == 0 && c.rx_dropped == 0 && c.queue_errors == 0,
        "the device dropped frames or broke a queue: {c:?}"
    );
    Ok(())
}

/// One feature scenario from start to clean-up.
fn scenario(
    bin: &std::path::Path,
    assets: &GuestAssets,
    initrd: &Initramfs,
    sc: &Scenario,
) -> Result<()> {
    let mut rig = LinuxRig::start(bin, NETNS, &[], false)?;
    let mut guest = Guest::boot(assets, initrd, &rig.socket, sc.options, false)?;
    println!("guest booted in {:.1} s", guest.vm.elapsed().as_secs_f64());
    let r = (|| {
        link_and_ping(&rig, &mut guest, Some(sc))?;
        bulk(&mut rig, &mut guest, MIB)?;
        power_off(&mut guest)
    })();
    if r.is_err() {
        println!(
            "----- backend log -----\n{}\n-----",
            rig.backend.proc.output().trim_end()
        );
        return r;
    }
    check_counters(&mut rig, MIB)
}

/// The reboot scenario: returns (reboot result, reconnect result).
fn reboot_and_reconnect(
    bin: &std::path::Path,
    assets: &GuestAssets,
    initrd: &Initramfs,
) -> (Result<()>, Result<()>) {
    let mut rig = match LinuxRig::start(bin, NETNS, &[], false) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("{e:#}");
            return (Err(e), Err(anyhow::anyhow!("not run: {msg}")));
        }
    };
    let reboot = (|| {
        let mut guest = Guest::boot(assets, initrd, &rig.socket, "", true)?;
        link_and_ping(&rig, &mut guest, None)?;
        println!("guest: reboot -f (QEMU resets the machine; the vhost-user connection stays)");
        guest.vm.send_line("reboot -f")?;
        let t = Instant::now();
        guest.wait_ready()?;
        println!("guest rebooted in {:.1} s", t.elapsed().as_secs_f64());
        let log = rig.backend.proc.output();
        ensure!(
            !log.contains("connection 1 closed"),
            "the reboot closed the vhost-user connection; expected a reset on the same one"
        );
        ensure!(
            rig.backend.negotiated().len() >= 2,
            "the backend saw no second feature negotiation after the reboot:\n{log}"
        );
        link_and_ping(&rig, &mut guest, None)?;
        bulk(&mut rig, &mut guest, 16)?;
        power_off(&mut guest)
    })();
    let reconnect = (|| {
        rig.backend
            .proc
            .wait_for("connection 1 closed", Duration::from_secs(10))?;
        println!("backend: connection 1 closed; booting a new QEMU on the same socket");
        let mut guest = Guest::boot(assets, initrd, &rig.socket, "", false)?;
        rig.backend
            .proc
            .wait_for("connection 2", Duration::from_secs(10))?;
        link_and_ping(&rig, &mut guest, None)?;
        bulk(&mut rig, &mut guest, MIB)?;
        power_off(&mut guest)?;
        check_counters(&mut rig, MIB)
    })();
    if reboot.is_err() || reconnect.is_err() {
        println!(
            "----- backend log -----\n{}\n-----",
            rig.backend.proc.output().trim_end()
        );
    }
    (reboot, reconnect)
}
