//! `virtnet-vhost-user`: virtnet's virtio-net device as a vhost-user
//! backend. See `--help` and `specs/08-hosted.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use virtnet::device::NetConfig;
use virtnet::pool::FramePool;
use virtnet_hosted::{
    bind, AnyBackend, BackendSpec, Server, ServerConfig, BIG_SLOT, DEFAULT_BUDGET,
};

/// Slots per pool: frames in flight in one direction.
const POOL_SLOTS: usize = 256;

/// The two frame pools, 64 KiB slots so TSO/checksum offloads can be
/// offered; statics, so they are zero pages until used and never allocated.
static RX_POOL: FramePool<BIG_SLOT, POOL_SLOTS> = FramePool::new();
static TX_POOL: FramePool<BIG_SLOT, POOL_SLOTS> = FramePool::new();

const NAME: &str = "virtnet-vhost-user";

/// virtnet's virtio-net device as a vhost-user backend: QEMU, cloud-hypervisor,
/// crosvm or DPDK's virtio-user connect to --socket and get a network card
/// whose frames go to --backend.
#[derive(Parser, Debug)]
#[command(name = NAME, version)]
struct Cli {
    /// Unix socket to listen on for the vhost-user frontend (a stale socket
    /// file is replaced; a live one is an error).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,

    /// Where frames go: tap:IFNAME (a TAP interface, with offloads),
    /// loopback (back to the guest), null (discarded), or stream:PATH
    /// (QEMU `-netdev stream` framing over a Unix socket, e.g. passt).
    #[arg(long, value_name = "BACKEND", default_value = "loopback")]
    backend: BackendSpec,

    /// MAC address offered to the guest (VIRTIO_NET_F_MAC).
    #[arg(long, value_name = "XX:XX:XX:XX:XX:XX", value_parser = parse_mac)]
    mac: Option<[u8; 6]>,

    /// MTU offered to the guest (VIRTIO_NET_F_MTU), 68 to 65535.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(68..))]
    mtu: Option<u16>,

    /// Busy-poll the queues and the backend instead of sleeping on events
    /// (one core at 100%; for benchmarks).
    #[arg(long)]
    poll: bool,

    /// Chains (TX) or frames (RX) the worker handles per queue per pass
    /// before it publishes, notifies and looks at its events again.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BUDGET as u64,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    budget: u64,

    /// Print the device counters every SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    stats_interval: Option<u64>,

    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next().unwrap_or("");
        if p.len() != 2 {
            return Err(format!("{s:?} is not a MAC address (XX:XX:XX:XX:XX:XX)"));
        }
        *b = u8::from_str_radix(p, 16)
            .map_err(|_| format!("{s:?} is not a MAC address (XX:XX:XX:XX:XX:XX)"))?;
    }
    if parts.next().is_some() {
        return Err(format!("{s:?} is not a MAC address (XX:XX:XX:XX:XX:XX)"));
    }
    if mac[0] & 1 != 0 {
        return Err(format!("{s} is a multicast address"));
    }
    Ok(mac)
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{NAME}: error: {msg}");
    ExitCode::FAILURE
}

/// Block SIGINT and SIGTERM in this thread and every thread it starts;
/// a dedicated thread takes them with `sigtimedwait`.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a local set; the mask
    // change affects only this (the main) thread and its future children.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Wait up to `timeout` for one of `set`; the signal number, or `None`.
fn wait_signal(set: &libc::sigset_t, timeout: Option<Duration>) -> Option<i32> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as _,
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `set` and `tsp` (null or a live timespec) are valid for the call.
    let r = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), tsp) };
    (r > 0).then_some(r)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's first paragraph says what is wrong: one line of it.
            let text = e.render().to_string();
            let line: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("{NAME}: {} (try --help)", line.join(" "));
            return ExitCode::from(2);
        }
    };
    let level = match cli.verbose {
        0 => log::LevelFilter::Info,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_default_env()
        .init();

    let sigs = block_signals();

    let backend = match AnyBackend::open(&cli.backend, BIG_SLOT) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let listener = match bind(&cli.socket) {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen on {e}")),
    };
    let mut config = ServerConfig {
        poll: cli.poll,
        budget: usize::try_from(cli.budget).unwrap_or(DEFAULT_BUDGET),
        ..ServerConfig::default()
    };
    config.net = NetConfig {
        mac: cli.mac,
        mtu: cli.mtu,
        ..config.net
    };
    let server = match Server::new(
        listener,
        cli.socket.clone(),
        config,
        backend,
        &RX_POOL,
        &TX_POOL,
    ) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let offered = virtnet::features::Features::from_bits_retain(
        server.offered_features() & !virtnet_hosted::device::PROTOCOL_FEATURES_BIT,
    );
    println!(
        "{NAME}: listening on {} (backend {}, {}, {} KiB pool slots)",
        cli.socket.display(),
        cli.backend,
        if cli.poll {
            "busy-poll"
        } else {
            "event-driven"
        },
        BIG_SLOT / 1024
    );
    log::info!("offered features: {offered:?} + VHOST_USER_F_PROTOCOL_FEATURES");

    let handle = server.handle();
    let interval = cli.stats_interval.map(Duration::from_secs);
    let signals = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match wait_signal(&sigs, interval) {
                Some(sig) => {
                    log::info!(
                        "{} received, shutting down",
                        if sig == libc::SIGINT {
                            "SIGINT"
                        } else {
                            "SIGTERM"
                        }
                    );
                    handle.shutdown();
                    return;
                }
                None => {
                    if interval.is_some() {
                        println!("{NAME}: stats: {}", handle.stats());
                    }
                }
            }
        });
    if let Err(e) = signals {
        return fail(format!("cannot start the signal thread: {e}"));
    }

    let result = server.run();
    let stats = server.handle().stats();
    drop(server);
    if let Err(e) = result {
        return fail(e);
    }
    println!("{NAME}: stopped; {stats}");
    ExitCode::SUCCESS
}
