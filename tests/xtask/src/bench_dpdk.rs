//! DPDK's `dpdk-testpmd` as a real virtio driver (virtio-user, no VM, no
//! hugepages) against a vhost-user backend: the harness shared by
//! `cargo xtask test dpdk` and `cargo xtask bench dpdk`, and the benchmark.
//!
//! The "guest" is testpmd with `--vdev net_virtio_user0,path=SOCK,...`, its
//! forwarding lcore on CPU 0 (`-l 0,1 --main-lcore 1`). The backend is
//! either `virtnet-vhost-user` pinned to CPU 1 (`taskset -c 1`), or a second
//! testpmd with DPDK's own vhost PMD (`--vdev net_vhost0,iface=SOCK`), its
//! forwarding lcore on CPU 1 (`-l 0,1 --main-lcore 0`). Command lines as in
//! /work/shared/notes/environment.md (`--no-huge -m 1024`, 8192 mbufs,
//! `--single-file-segments` on the virtio-user side so its memory can be
//! shared). testpmd runs non-interactively with `--stats-period 1` and is
//! stopped with SIGINT, after which it prints its forward statistics.
//!
//! `cargo xtask bench dpdk` runs, for txonly (virtio-user `txonly` into
//! virtnet `--backend null --poll` / DPDK vhost `rxonly`) and io loops
//! (virtio-user `io --tx-first` through virtnet `--backend loopback --poll`
//! / DPDK vhost `io`), at 64 and 1518 bytes, mergeable buffers on and off:
//! virtnet and DPDK alternately, [`ROUNDS`] runs each, and prints one table
//! of Mpps (median of the 1-second periods after the first [`WARMUP`]) and
//! the ratio virtnet/DPDK. It passes no judgement.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::ctx::Ctx;
use crate::install::ensure_apt;
use crate::rig::{build_backend, install_interrupt_handler, Backend, Proc, TempFile};
use crate::util::capture_stdout;

/// testpmd's `--file-prefix` for the virtio-user side (our pid is added:
/// two testpmds with one prefix refuse to start, and another checkout may
/// run this harness at the same time).
const GUEST_PREFIX: &str = "virtnet-guest";
/// testpmd's `--file-prefix` for the DPDK vhost side (our pid is added).
const HOST_PREFIX: &str = "virtnet-host";

/// `PREFIX-<our pid>`.
fn file_prefix(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}
/// Runs per backend and case in the benchmark.
pub const ROUNDS: usize = 3;
/// Stats periods (1 s each) left out at the start of each run.
pub const WARMUP: usize = 2;
/// Seconds each benchmark run forwards.
const BENCH_SECS: u64 = 6;
/// The burst testpmd sends with `--tx-first` (its default burst size).
pub const TX_FIRST_BURST: u64 = 32;

/// What the virtio-user testpmd does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--forward-mode=txonly`: generate frames as fast as the ring takes them.
    TxOnly,
    /// `--forward-mode=io --tx-first`: send one burst, then send back every
    /// frame received (a loop through the backend).
    Io,
}

impl Mode {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::TxOnly => "txonly",
            Mode::Io => "io loop",
        }
    }
}

/// The virtio-user side of one run.
#[derive(Debug, Clone)]
pub struct VirtioUser {
    /// The vhost-user socket to connect to.
    pub socket: PathBuf,
    /// Forwarding mode.
    pub mode: Mode,
    /// Frame length (`--txpkts`; for the io loop, of the first burst).
    pub pkt_len: u32,
    /// virtio-user `mrg_rxbuf=`.
    pub mrg_rxbuf: bool,
    /// virtio-user `in_order=`.
    pub in_order: bool,
}

impl VirtioUser {
    /// The testpmd command line.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("dpdk-testpmd");
        cmd.args([
            "--no-huge",
            "-m",
            "1024",
            "--no-pci",
            "--single-file-segments",
            &format!("--file-prefix={}", file_prefix(GUEST_PREFIX)),
            "-l",
            "0,1",
            "--main-lcore",
            "1",
            "--vdev",
            &format!(
                "net_virtio_user0,path={},queues=1,mrg_rxbuf={},in_order={}",
                self.socket.display(),
                u8::from(self.mrg_rxbuf),
                u8::from(self.in_order)
            ),
            "--",
            "--total-num-mbufs=8192",
            "--stats-period=1",
            &format!("--txpkts={}", self.pkt_len),
        ]);
        match self.mode {
            Mode::TxOnly => cmd.arg("--forward-mode=txonly"),
            // --tx-first sends one burst made like txonly's (so --txpkts
            // sets the loop's frame length too).
            Mode::Io => cmd.args(["--forward-mode=io", "--tx-first"]),
        };
        cmd
    }
}

/// DPDK's vhost PMD in a second testpmd: the reference backend.
pub fn dpdk_vhost_command(socket: &Path, mode: Mode) -> Command {
    let mut cmd = Command::new("dpdk-testpmd");
    cmd.args([
        "--no-huge",
        "-m",
        "1024",
        "--no-pci",
        &format!("--file-prefix={}", file_prefix(HOST_PREFIX)),
        "-l",
        "0,1",
        "--main-lcore",
        "0",
        "--vdev",
        &format!("net_vhost0,iface={},queues=1", socket.display()),
        "--",
        "--total-num-mbufs=8192",
        "--stats-period=1",
        match mode {
            Mode::TxOnly => "--forward-mode=rxonly",
            Mode::Io => "--forward-mode=io",
        },
    ]);
    cmd
}

/// What testpmd printed, parsed.
#[derive(Debug, Default, Clone)]
pub struct TestpmdStats {
    /// Forward statistics at the stop: frames received.
    pub rx_packets: u64,
    /// Forward statistics: RX-dropped (missed by the NIC).
    pub rx_dropped: u64,
    /// Forward statistics: frames transmitted (taken by the TX ring).
    pub tx_packets: u64,
    /// Forward statistics: frames the TX ring did not take (a generator
    /// that does not wait counts these as the ring fills: back-pressure).
    pub tx_dropped: u64,
    /// Largest `RX-errors`/`RX-error` seen.
    pub rx_errors: u64,
    /// Largest `TX-errors` seen.
    pub tx_errors: u64,
    /// Largest `RX-missed` seen.
    pub rx_missed: u64,
    /// Largest `RX-nombuf`/`RX-nombufs` seen.
    pub rx_nombuf: u64,
    /// `Rx-pps` of each stats period, in order.
    pub rx_pps: Vec<u64>,
    /// `Tx-pps` of each stats period, in order.
    pub tx_pps: Vec<u64>,
}

/// Every number that follows `key` (e.g. `RX-packets:`) in `text`.
fn values(text: &str, key: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find(key) {
        rest = &rest[pos + key.len()..];
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(v) = digits.parse() {
            out.push(v);
        }
    }
    out
}

impl TestpmdStats {
    /// Parses testpmd's output (periodic NIC statistics and the forward
    /// statistics printed when it stops).
    pub fn parse(text: &str) -> Result<TestpmdStats> {
        let fwd = text
            .find("Forward statistics for port 0")
            .map(|i| &text[i..])
            .context("testpmd printed no forward statistics (did it stop cleanly?)")?;
        let first = |key: &str| values(fwd, key).first().copied();
        let max = |keys: &[&str]| keys.iter().flat_map(|k| values(text, k)).max().unwrap_or(0);
        Ok(TestpmdStats {
            rx_packets: first("RX-packets:").context("no RX-packets")?,
            rx_dropped: first("RX-dropped:").context("no RX-dropped")?,
            tx_packets: first("TX-packets:").context("no TX-packets")?,
            tx_dropped: first("TX-dropped:").context("no TX-dropped")?,
            rx_errors: max(&["RX-errors:", "RX-error:"]),
            tx_errors: max(&["TX-errors:"]),
            rx_missed: max(&["RX-missed:"]),
            rx_nombuf: max(&["RX-nombuf:", "RX-nombufs:"]),
            rx_pps: values(text, "Rx-pps:"),
            tx_pps: values(text, "Tx-pps:"),
        })
    }

    /// Median of the per-period rates after `warmup` periods, in Mpps
    /// (txonly: `Tx-pps`, frames the TX ring took; io loop: `Rx-pps`).
    pub fn mpps(&self, mode: Mode, warmup: usize) -> Option<f64> {
        let series = match mode {
            Mode::TxOnly => &self.tx_pps,
            Mode::Io => &self.rx_pps,
        };
        let steady: Vec<u64> = series.iter().copied().skip(warmup).collect();
        median(&steady).map(|m| m / 1e6)
    }
}

/// The median of `v` (None when empty).
pub fn median(v: &[u64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2] as f64
    } else {
        (s[n / 2 - 1] + s[n / 2]) as f64 / 2.0
    })
}

/// Runs the virtio-user testpmd for `secs` seconds of forwarding, then
/// SIGINT; returns its parsed statistics and its whole output.
pub fn run_virtio_user(vu: &VirtioUser, secs: f64, echo: bool) -> Result<(TestpmdStats, String)> {
    let mut pmd = Proc::spawn("virtio-user", &mut vu.command(), echo, false)?;
    pmd.wait_for("packet forwarding - ports=", Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (status, clean) = pmd.stop(libc::SIGINT, Duration::from_secs(20));
    let out = pmd.output();
    ensure!(
        clean && status.is_some_and(|s| s.success()),
        "virtio-user testpmd did not exit cleanly on SIGINT ({status:?}):\n{out}"
    );
    let stats = TestpmdStats::parse(&out).with_context(|| format!("testpmd output:\n{out}"))?;
    Ok((stats, out))
}

/// Makes sure `dpdk-testpmd` (package `dpdk-dev`) and `taskset` are here.
pub fn ensure_dpdk() -> Result<()> {
    ensure_apt(&["dpdk-dev", "util-linux"])
}

/// Removes the runtime directories testpmd leaves in `/var/run/dpdk`.
pub fn remove_dpdk_runtime_dirs() {
    for prefix in [GUEST_PREFIX, HOST_PREFIX] {
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(file_prefix(prefix)));
    }
}

/// A socket path for a run.
pub fn socket_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("virtnet-{what}-{}.sock", std::process::id()))
}

/// Starts DPDK's vhost PMD testpmd on `socket` and waits until it forwards.
pub fn start_dpdk_vhost(socket: &Path, mode: Mode, echo: bool) -> Result<(Proc, TempFile)> {
    let file = TempFile::new(socket);
    let mut p = Proc::spawn(
        "dpdk-vhost",
        &mut dpdk_vhost_command(socket, mode),
        echo,
        false,
    )?;
    p.wait_for("packet forwarding - ports=", Duration::from_secs(30))?;
    ensure!(
        socket.exists(),
        "the vhost PMD made no socket at {}",
        socket.display()
    );
    Ok((p, file))
}

/// The backend for one benchmark run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Virtnet,
    Dpdk,
}

/// One benchmark case.
#[derive(Debug, Clone, Copy)]
struct Case {
    mode: Mode,
    len: u32,
    mrg: bool,
}

/// One measured run: its Mpps.
fn bench_run(bin: &Path, peer: Peer, case: Case) -> Result<f64> {
    let socket = socket_path("bench");
    let vu = VirtioUser {
        socket: socket.clone(),
        mode: case.mode,
        pkt_len: case.len,
        mrg_rxbuf: case.mrg,
        in_order: false,
    };
    let stats = match peer {
        Peer::Virtnet => {
            let backend_kind = match case.mode {
                Mode::TxOnly => "--backend=null",
                Mode::Io => "--backend=loopback",
            };
            let mut be = Backend::start(
                bin,
                &socket,
                &[backend_kind, "--poll"],
                None,
                Some(1),
                false,
            )?;
            let r = run_virtio_user(&vu, BENCH_SECS as f64, false);
            let c = be.stop();
            let (stats, _) = r?;
            let c = c?;
            ensure!(c.tx_packets > 0, "virtnet moved no frames: {c:?}");
            stats
        }
        Peer::Dpdk => {
            let (mut vhost, _file) = start_dpdk_vhost(&socket, case.mode, false)?;
            let r = run_virtio_user(&vu, BENCH_SECS as f64, false);
            let _ = vhost.stop(libc::SIGINT, Duration::from_secs(10));
            r?.0
        }
    };
    ensure!(stats.tx_packets > 0, "no frames sent");
    stats
        .mpps(case.mode, WARMUP)
        .context("testpmd printed too few stats periods")
}

/// One line of the machine description: CPU model, cores, load.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = capture_stdout(Command::new("uname").arg("-r")).unwrap_or_default();
    let dpdk = capture_stdout(Command::new("dpkg-query").args(["-W", "-f=${Version}", "dpdk-dev"]))
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, Linux {}, DPDK {}, load average {}",
        kernel.trim(),
        dpdk.trim(),
        load_average()
    )
}

/// The 1-minute load average.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// `cargo xtask bench dpdk`.
pub fn bench(ctx: &Ctx) -> Result<()> {
    install_interrupt_handler();
    ensure_dpdk()?;
    let bin = build_backend(ctx)?;
    if std::thread::available_parallelism().map_or(0, |n| n.get()) < 2 {
        bail!("the benchmark pins the two sides to CPUs 0 and 1: it needs two cores");
    }
    let started = Instant::now();
    let load_before = load_average();
    let mut cases = Vec::new();
    for mode in [Mode::TxOnly, Mode::Io] {
        for len in [64, 1518] {
            for mrg in [true, false] {
                cases.push(Case { mode, len, mrg });
            }
        }
    }
    let mut rows = Vec::new();
    for case in &cases {
        let mut samples: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for round in 0..ROUNDS {
            for (i, peer) in [Peer::Virtnet, Peer::Dpdk].into_iter().enumerate() {
                let r = bench_run(&bin, peer, *case);
                match r {
                    Ok(m) => {
                        println!(
                            "{} {} B mrg {}: {:?} run {}: {m:.3} Mpps",
                            case.mode.name(),
                            case.len,
                            if case.mrg { "on" } else { "off" },
                            peer,
                            round + 1
                        );
                        samples[i].push(m);
                    }
                    Err(e) => {
                        crate::rig::wait_if_interrupted();
                        println!(
                            "{} {} B: {peer:?} run failed: {e:#}",
                            case.mode.name(),
                            case.len
                        );
                    }
                }
            }
        }
        rows.push((*case, samples));
    }
    remove_dpdk_runtime_dirs();
    println!();
    println!("machine: {}", machine());
    println!(
        "load average before {load_before}, after {}; {:.0} s",
        load_average(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "virtio-user (CPU 0): {}",
        crate::util::display(
            &VirtioUser {
                socket: "SOCK".into(),
                mode: Mode::TxOnly,
                pkt_len: 64,
                mrg_rxbuf: true,
                in_order: false
            }
            .command()
        )
    );
    println!(
        "  io loop: --forward-mode=io --tx-first instead of txonly; --txpkts=LEN; mrg_rxbuf=0|1"
    );
    println!("virtnet (CPU 1): taskset -c 1 virtnet-vhost-user --socket SOCK --backend null|loopback --poll");
    println!(
        "DPDK vhost (CPU 1): {}",
        crate::util::display(&dpdk_vhost_command(Path::new("SOCK"), Mode::TxOnly))
    );
    println!("  io loop: --forward-mode=io");
    println!(
        "Mpps: median of 1 s periods after {WARMUP} s warm-up, {BENCH_SECS} s per run, then the median of {ROUNDS} alternating runs"
    );
    println!();
    println!("{}", table(&rows));
    Ok(())
}

/// The result table (Markdown).
fn table(rows: &[(Case, [Vec<f64>; 2])]) -> String {
    let mut s = String::from(
        "| case | frame | mergeable | virtnet Mpps | DPDK vhost Mpps | virtnet/DPDK |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for (case, samples) in rows {
        let med = |v: &Vec<f64>| {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            match v.len() {
                0 => None,
                n if n % 2 == 1 => Some(v[n / 2]),
                n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
            }
        };
        let (a, b) = (med(&samples[0]), med(&samples[1]));
        let fmt = |x: Option<f64>| x.map_or("failed".to_string(), |x| format!("{x:.3}"));
        let ratio = match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        s.push_str(&format!(
            "| {} | {} B | {} | {} | {} | {} |\n",
            case.mode.name(),
            case.len,
            if case.mrg { "on" } else { "off" },
            fmt(a),
            fmt(b),
            ratio
        ));
    }
    s
}

/// The backend counters' consistency with what testpmd counted: `a - b`
/// within `0..=limit`.
pub fn within(a: u64, b: u64, limit: u64) -> bool {
    a >= b && a - b <= limit
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "
  ######################## NIC statistics for port 0  ########################
  RX-packets: 10         RX-missed: 0          RX-bytes:  640
  RX-errors: 0
  RX-nombuf:  0
  TX-packets: 42         TX-errors: 0          TX-bytes:  2688

  Throughput (since last show)
  Rx-pps:            5          Rx-bps:          2560
  Tx-pps:       855979          Tx-bps:    438261656
  ############################################################################
  Rx-pps:            7          Rx-bps:          2560
  Tx-pps:      1105756          Tx-bps:    438261656
Telling cores to stop...

  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 100            RX-dropped: 0             RX-total: 100
  TX-packets: 4365024        TX-dropped: 35952320      TX-total: 40317344
  ----------------------------------------------------------------------------
";

    #[test]
    fn parses_testpmd_output() {
        let s = TestpmdStats::parse(SAMPLE).unwrap();
        assert_eq!(s.rx_packets, 100);
        assert_eq!(s.tx_packets, 4365024);
        assert_eq!(s.tx_dropped, 35952320);
        assert_eq!(s.rx_errors, 0);
        assert_eq!(s.tx_pps, [855979, 1105756]);
        assert_eq!(s.rx_pps, [5, 7]);
        assert_eq!(s.mpps(Mode::TxOnly, 1), Some(1.105756));
        assert!(TestpmdStats::parse("no stats").is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3, 1, 2]), Some(2.0));
        assert_eq!(median(&[4, 1, 2, 3]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
