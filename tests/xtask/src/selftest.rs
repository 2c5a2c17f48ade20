//! Hidden developer checks of the harness itself (not test suites):
//! `cargo xtask guest-selftest` and `cargo xtask netns-selftest`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};

use crate::ctx::Ctx;
use crate::guest::{init_script, GuestAssets, Initramfs, INSMOD_FAILED_MARKER, READY_MARKER};
use crate::netns::Netns;
use crate::qemu::{Net, Qemu, QemuConfig};
use crate::util::capture_stdout;

/// Printed by the self-test guest after `ip -o link`.
const DONE_MARKER: &str = "VIRTNET-SELFTEST-DONE";

/// Boots the guest with QEMU's user network behind virtio-net-pci, loads
/// the modules, brings eth0 up, and checks that the guest lists it.
pub fn guest_selftest(ctx: &Ctx) -> Result<()> {
    let t0 = Instant::now();
    let assets = GuestAssets::ensure(&ctx.work_dir)?;
    println!(
        "guest kernel {} ({}), assets ready in {:.1} s",
        assets.kernel_version(),
        assets.vmlinuz().display(),
        t0.elapsed().as_secs_f64()
    );
    let t1 = Instant::now();
    let init = init_script(&format!(
        "ip link set eth0 up\nip -o link\necho {DONE_MARKER}\n"
    ));
    let initrd = Initramfs::build(&assets, &init, &[], &assets.dir().join("selftest.cpio.gz"))?;
    let size = std::fs::metadata(initrd.path())?.len();
    println!(
        "initramfs {} ({} KiB) built in {:.1} s",
        initrd.path().display(),
        size / 1024,
        t1.elapsed().as_secs_f64()
    );

    let mut cfg = QemuConfig::new(assets.vmlinuz(), initrd.path());
    cfg.net = Net::User;
    let mut vm = Qemu::spawn(&cfg)?;
    vm.wait_for(READY_MARKER, Duration::from_secs(120))?;
    let ready = vm.elapsed();
    let out = vm.wait_for(DONE_MARKER, Duration::from_secs(60))?;
    let done = vm.elapsed();
    let status = vm.wait_exit(Duration::from_secs(30))?;
    let log = vm.log();
    println!(
        "----- guest output -----\n{}\n------------------------",
        out.trim_end()
    );
    if log.contains(INSMOD_FAILED_MARKER) {
        bail!("a module failed to load:\n{log}");
    }
    let eth0 = out.lines().find(|l| l.contains(": eth0:"));
    let Some(eth0) = eth0 else {
        bail!("the guest has no eth0:\n{log}");
    };
    ensure!(eth0.contains("UP"), "eth0 is not up: {eth0}");
    println!(
        "guest-selftest: ok: booted to modules loaded in {:.1} s, eth0 up at {:.1} s, QEMU exited ({status}) at {:.1} s",
        ready.as_secs_f64(),
        done.as_secs_f64(),
        vm.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Creates a namespace with a TAP device in it, checks it from inside, and
/// checks that dropping it removes the namespace.
pub fn netns_selftest(_ctx: &Ctx) -> Result<()> {
    let name = "virtnet-selftest";
    {
        let ns = Netns::create(name)?;
        ns.add_tap("vtap0")?;
        let links = ns.run(&["ip", "-o", "link"])?;
        print!("{links}");
        ensure!(links.contains("vtap0"), "vtap0 not in namespace {name}");
        ensure!(links.contains("lo:"), "no lo in namespace {name}");
        let host = capture_stdout(Command::new("ip").args(["-o", "link"]))?;
        ensure!(
            !host.contains("vtap0"),
            "vtap0 leaked into the host namespace"
        );
    }
    let list = capture_stdout(Command::new("ip").args(["netns", "list"]))?;
    ensure!(
        !list.contains(name),
        "namespace {name} still exists after drop"
    );
    println!("netns-selftest: ok");
    Ok(())
}
