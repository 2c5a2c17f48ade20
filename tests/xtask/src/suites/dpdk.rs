//! `dpdk`: DPDK's virtio-user driver (Debian's `dpdk-testpmd`, no VM, no
//! hugepages) against `virtnet-vhost-user` (specs/08-hosted.md, "Real peers").
//!
//! Runs (each a fresh backend pinned to CPU 1 and a fresh testpmd with its
//! forwarding lcore on CPU 0, forwarding for [`SECS`] s, then SIGINT to
//! testpmd and SIGTERM to the backend):
//!
//! * txonly into `--backend null` and io forwarding (`--tx-first`) through
//!   `--backend loopback`, each with virtio-user `mrg_rxbuf=0|1` ×
//!   `in_order=0|1` (virtnet does not offer IN_ORDER, so `in_order=1` checks
//!   that the driver falls back to plain split rings);
//! * the same two with the backend in busy-poll mode (`--poll`).
//!
//! Each run passes when: testpmd and the backend both exit cleanly on their
//! signal; frames flowed (TX-packets > 0; for the loop also RX-packets > 0);
//! testpmd counted no RX/TX errors, no missed frames and no mbuf
//! shortage; the backend counted no dropped frame and no broken queue; the
//! negotiated features include MRG_RXBUF exactly when `mrg_rxbuf=1`; the
//! backend's counters agree with testpmd's up to what was in flight when the
//! ring stopped (txonly: backend TX within 256 — one ring — below testpmd's
//! TX-packets; loop: testpmd's TX-packets minus RX-packets at most the
//! 32-frame first burst, i.e. no frame lost in the loop, and the backend's
//! RX/TX within 32 + 256 of testpmd's). txonly's `TX-dropped` is not an
//! error: it counts the generator's attempts while the ring was full
//! (back-pressure).
//!
//! Runtime: about a minute (10 runs of ~5 s).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use super::{Ctx, Tally};
use crate::bench_dpdk::{
    ensure_dpdk, remove_dpdk_runtime_dirs, run_virtio_user, socket_path, within, Mode, VirtioUser,
    TX_FIRST_BURST,
};
use crate::rig::{build_backend, feature_names, install_interrupt_handler, Backend};

/// Seconds each run forwards.
const SECS: f64 = 3.0;
/// The virtio-user queue size (DPDK's default, 256).
const RING: u64 = 256;

/// Runs the suite.
pub fn run(ctx: &Ctx) -> Result<Tally> {
    install_interrupt_handler();
    let started = Instant::now();
    ensure_dpdk()?;
    let bin = build_backend(ctx)?;
    let mut tally = Tally::default();
    let mut runs = Vec::new();
    for mode in [Mode::TxOnly, Mode::Io] {
        for mrg in [false, true] {
            for in_order in [false, true] {
                runs.push((mode, mrg, in_order, false));
            }
        }
    }
    runs.push((Mode::TxOnly, true, false, true));
    runs.push((Mode::Io, false, false, true));
    for (mode, mrg, in_order, poll) in runs {
        let name = format!(
            "dpdk: virtio-user {} {} mrg_rxbuf={} in_order={}{}",
            mode.name(),
            match mode {
                Mode::TxOnly => "into --backend null",
                Mode::Io => "through --backend loopback",
            },
            u8::from(mrg),
            u8::from(in_order),
            if poll { " (--poll)" } else { "" }
        );
        println!("--- {name} ---");
        let t = Instant::now();
        let r = one_run(&bin, mode, mrg, in_order, poll);
        if let Err(e) = &r {
            crate::rig::wait_if_interrupted();
            println!("error: {e:#}");
        }
        println!("({:.1} s)", t.elapsed().as_secs_f64());
        tally.record(&name, r.is_ok());
    }
    remove_dpdk_runtime_dirs();
    println!("dpdk suite: {:.0} s", started.elapsed().as_secs_f64());
    Ok(tally)
}

/// One run; an error says what failed.
fn one_run(bin: &Path, mode: Mode, mrg: bool, in_order: bool, poll: bool) -> Result<()> {
    let socket = socket_path("dpdk");
    let mut args = vec![match mode {
        Mode::TxOnly => "--backend=null",
        Mode::Io => "--backend=loopback",
    }];
    if poll {
        args.push("--poll");
    }
    let mut backend = Backend::start(bin, &socket, &args, None, Some(1), false)?;
    let vu = VirtioUser {
        socket: socket.clone(),
        mode,
        pkt_len: 64,
        mrg_rxbuf: mrg,
        in_order,
    };
    let pmd = run_virtio_user(&vu, SECS, false);
    // The backend notices the disconnect; give it a moment to log it.
    let _ = backend
        .proc
        .wait_for("closed; device reset", Duration::from_secs(5));
    let counters = backend.stop();
    let log = backend.proc.output();
    let (s, _out) = pmd?;
    let c = counters?;
    let negotiated = backend.negotiated();
    let last = negotiated.last().cloned().unwrap_or_default();
    println!("backend: features negotiated: {last}");
    let rate = s.mpps(mode, 1).unwrap_or(0.0);
    println!(
        "testpmd: RX-packets {} TX-packets {} TX-dropped {} (RX-errors {} TX-errors {} RX-missed {} RX-nombuf {}); ~{rate:.3} Mpps",
        s.rx_packets, s.tx_packets, s.tx_dropped, s.rx_errors, s.tx_errors, s.rx_missed, s.rx_nombuf
    );
    println!(
        "backend: tx {} frames, rx {} frames, dropped tx {} rx {}, queue errors {}",
        c.tx_packets, c.rx_packets, c.tx_dropped, c.rx_dropped, c.queue_errors
    );
    let names = feature_names(&last);
    ensure!(
        !last.is_empty(),
        "the backend logged no negotiated features:\n{log}"
    );
    ensure!(
        names.iter().any(|n| n == "MRG_RXBUF") == mrg,
        "MRG_RXBUF negotiated = {} but mrg_rxbuf={}",
        !mrg,
        u8::from(mrg)
    );
    ensure!(s.tx_packets > 0, "testpmd sent nothing");
    ensure!(
        s.rx_errors == 0 && s.tx_errors == 0 && s.rx_missed == 0 && s.rx_nombuf == 0,
        "testpmd counted errors: {s:?}"
    );
    ensure!(
        c.tx_dropped == 0 && c.rx_dropped == 0 && c.queue_errors == 0,
        "the backend dropped frames or broke a queue: {c:?}"
    );
    match mode {
        Mode::TxOnly => {
            ensure!(
                s.rx_packets == 0 && c.rx_packets == 0,
                "null received something"
            );
            ensure!(
                within(s.tx_packets, c.tx_packets, RING),
                "testpmd sent {} frames, the backend took {}: more apart than one ring",
                s.tx_packets,
                c.tx_packets
            );
        }
        Mode::Io => {
            ensure!(s.rx_packets > 0, "nothing came back through the loop");
            ensure!(
                within(s.tx_packets, s.rx_packets, TX_FIRST_BURST),
                "frames lost in the loop: testpmd sent {} and received {}",
                s.tx_packets,
                s.rx_packets
            );
            ensure!(
                within(s.tx_packets, c.tx_packets, RING)
                    && within(c.rx_packets, s.rx_packets, TX_FIRST_BURST + RING)
                    && c.rx_packets <= c.tx_packets,
                "the backend's counters (tx {} rx {}) disagree with testpmd's (TX {} RX {})",
                c.tx_packets,
                c.rx_packets,
                s.tx_packets,
                s.rx_packets
            );
        }
    }
    Ok(())
}
