//! What a frame written to a TAP interface costs: the TAP backend's own
//! path (one `writev` per frame, `TapBackend::transmit`) against the only
//! way Linux offers to batch them, `io_uring` (a batch of `writev`
//! requests, one `io_uring_enter` per batch). A TAP file descriptor takes
//! one frame per write; there is no `sendmmsg` for it.
//!
//! `cargo xtask bench tap` runs this inside a network namespace of its own
//! on a TAP interface it creates there (specs/10-performance.md, "TAP
//! writes"). By hand, as root, with TAP interface `vntap0` up:
//!
//!     cargo run --release -p virtnet-hosted --example tap_write_batch -- --tap vntap0
//!
//! The frames carry an unassigned ethertype (0x88b5, IEEE "local
//! experimental"), so the kernel drops each one as soon as it has taken it
//! in: what is timed is the write and the kernel's intake, not a protocol.

use std::os::fd::RawFd;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use io_uring::{opcode, types, IoUring};
use virtnet::device::Backend;
use virtnet::wire::NetHdrRepr;
use virtnet_hosted::backend::{TapBackend, VNET_HDR_LEN};
use virtnet_hosted::HostBackend;

/// Time TAP writes: one `writev` per frame against `io_uring` batches.
#[derive(Parser)]
struct Args {
    /// The TAP interface (it must exist and be up).
    #[arg(long, default_value = "vntap0")]
    tap: String,
    /// Frame sizes in bytes (without the 12-byte virtio-net header).
    #[arg(long, value_delimiter = ',', default_value = "64,1514",
          value_parser = clap::value_parser!(u16).range(60..=1514))]
    sizes: Vec<u16>,
    /// Frames per `io_uring_enter`.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=256))]
    batch: u32,
    /// Frames per measurement.
    #[arg(long, default_value_t = 200_000)]
    frames: u32,
    /// Measurements per way and size, alternated; the table has the lowest.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
}

/// A frame to the broadcast address with ethertype 0x88b5, `size` bytes.
fn frame(size: usize) -> Vec<u8> {
    let mut f = vec![0u8; size];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// What one measurement saw.
struct Outcome {
    ns_per_frame: f64,
    /// Frames the kernel took.
    sent: u64,
    /// Frames refused (a full TAP queue, or an error).
    refused: u64,
}

/// `frames` frames through `TapBackend::transmit`.
fn per_frame(tap: &mut TapBackend, f: &[u8], frames: u32) -> Outcome {
    let hdr = NetHdrRepr::default();
    let (mut sent, mut refused) = (0u64, 0u64);
    let t = Instant::now();
    for _ in 0..frames {
        match tap.transmit(&hdr, f) {
            Ok(()) => sent += 1,
            Err(_) => refused += 1,
        }
    }
    let ns = t.elapsed().as_nanos() as f64;
    Outcome {
        ns_per_frame: ns / f64::from(frames),
        sent,
        refused,
    }
}

/// `frames` frames as `io_uring` batches of `batch` `writev` requests, the
/// same two iovecs as `TapBackend::transmit` (header, frame).
fn batched(
    ring: &mut IoUring,
    fd: RawFd,
    f: &[u8],
    frames: u32,
    batch: u32,
) -> std::io::Result<Outcome> {
    let hdr = [0u8; VNET_HDR_LEN];
    let iov = [
        libc::iovec {
            iov_base: hdr.as_ptr() as *mut libc::c_void,
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        },
    ];
    let want = (VNET_HDR_LEN + f.len()) as i32;
    let (mut sent, mut refused) = (0u64, 0u64);
    let rounds = frames / batch;
    let t = Instant::now();
    for _ in 0..rounds {
        for _ in 0..batch {
            let sqe = opcode::Writev::new(types::Fd(fd), iov.as_ptr(), 2).build();
            // SAFETY: the request reads `iov` and the buffers it describes,
            // which live until this function returns; every request is
            // completed (`submit_and_wait` below) before the next batch and
            // before they go away. The ring has room: it is drained each round
            // and has at least `batch` entries.
            unsafe { ring.submission().push(&sqe) }
                .map_err(|_| std::io::Error::other("submission queue full"))?;
        }
        ring.submit_and_wait(batch as usize)?;
        for cqe in ring.completion() {
            if cqe.result() == want {
                sent += 1;
            } else {
                refused += 1;
            }
        }
    }
    let ns = t.elapsed().as_nanos() as f64;
    Ok(Outcome {
        ns_per_frame: ns / f64::from(rounds * batch),
        sent,
        refused,
    })
}

fn run(args: &Args) -> std::io::Result<()> {
    let mut tap = TapBackend::open(&args.tap)?;
    let fd = tap
        .rx_fd()
        .ok_or_else(|| std::io::Error::other("the TAP backend has no file descriptor"))?;
    let mut ring = IoUring::new(args.batch.next_power_of_two())?;
    println!(
        "TAP writes on {}: {} frames per measurement, io_uring batches of {}, \
         lowest of {} alternated runs",
        tap.name(),
        args.frames,
        args.batch,
        args.runs
    );
    println!();
    println!("| frame | writev per frame, ns/frame | io_uring batch, ns/frame | batch/writev | refused |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for &size in &args.sizes {
        let f = frame(usize::from(size));
        let (mut one, mut many) = (f64::INFINITY, f64::INFINITY);
        let mut refused = 0u64;
        for _ in 0..args.runs {
            let a = per_frame(&mut tap, &f, args.frames);
            let b = batched(&mut ring, fd, &f, args.frames, args.batch)?;
            if a.sent == 0 || b.sent == 0 {
                return Err(std::io::Error::other(format!(
                    "the kernel took no frame of {size} B (is {} up?)",
                    args.tap
                )));
            }
            one = one.min(a.ns_per_frame);
            many = many.min(b.ns_per_frame);
            refused += a.refused + b.refused;
        }
        println!(
            "| {size} B | {one:.0} | {many:.0} | {:.2} | {refused} |",
            many / one
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tap_write_batch: {e}");
            ExitCode::FAILURE
        }
    }
}
