//! What a frame written to or read from a TAP interface costs: the TAP
//! backend's own path (one `writev` per frame, `TapBackend::transmit`; one
//! `readv` per frame, `TapBackend::receive`) against the only way Linux
//! offers to batch them, `io_uring` (a batch of `writev` or `readv`
//! requests, one `io_uring_enter` per batch). A TAP file descriptor takes
//! and gives one frame per call; there is no `sendmmsg`/`recvmmsg` for it.
//!
//! Reads: the frames are first queued on the TAP (untimed) by sending them
//! out of the interface through a packet socket, [`QUEUED`] at a time (the
//! TAP queue holds 1,000); then reading them back is timed.
//!
//! `cargo xtask bench tap` runs this inside a network namespace of its own
//! on a TAP interface it creates there (specs/10-performance.md, "TAP reads
//! and writes"). By hand, as root, with TAP interface `vntap0` up:
//!
//!     cargo run --release -p virtnet-hosted --example tap_batch -- --tap vntap0
//!
//! The frames carry an unassigned ethertype (0x88b5, IEEE "local
//! experimental"), so the kernel drops each written one as soon as it has
//! taken it in: what is timed is the write and the kernel's intake, not a
//! protocol.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use io_uring::{opcode, types, IoUring};
use virtnet::device::Backend;
use virtnet::wire::NetHdrRepr;
use virtnet_hosted::backend::{TapBackend, VNET_HDR_LEN};
use virtnet_hosted::HostBackend;

/// Frames queued on the TAP before each timed read-back (its queue holds
/// 1,000).
const QUEUED: u32 = 512;

/// Time TAP writes and reads: one call per frame against `io_uring` batches.
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
    /// Frames per measurement (a multiple of 512 is read).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(512..))]
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

/// What a batch does.
#[derive(Clone, Copy)]
enum Op {
    Read,
    Write,
}

/// One `io_uring` batch: a `readv` or `writev` of two iovecs on `fd` per
/// item of `iovs`, one `io_uring_enter` that waits for all of them; returns
/// how many moved `want` bytes and how many did not.
///
/// # Safety
///
/// Each item's iovecs must describe buffers that stay valid for the whole
/// call and that nothing else reads (for `Read`) or writes while it runs;
/// every request completes before this returns. `ring` must be empty and
/// have room for every item.
unsafe fn run_batch<'a>(
    ring: &mut IoUring,
    fd: RawFd,
    op: Op,
    iovs: impl Iterator<Item = &'a [libc::iovec; 2]>,
    want: i32,
) -> std::io::Result<(u64, u64)> {
    let mut n = 0usize;
    for iov in iovs {
        let sqe = match op {
            Op::Read => opcode::Readv::new(types::Fd(fd), iov.as_ptr(), 2).build(),
            Op::Write => opcode::Writev::new(types::Fd(fd), iov.as_ptr(), 2).build(),
        };
        // SAFETY: the caller keeps the buffers valid and unshared until
        // this returns, which is after every request completed.
        unsafe { ring.submission().push(&sqe) }
            .map_err(|_| std::io::Error::other("submission queue full"))?;
        n += 1;
    }
    ring.submit_and_wait(n)?;
    let (mut ok, mut bad) = (0u64, 0u64);
    for cqe in ring.completion() {
        if cqe.result() == want {
            ok += 1;
        } else {
            bad += 1;
        }
    }
    Ok((ok, bad))
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
        let iovs = core::iter::repeat_n(&iov, batch as usize);
        // SAFETY: `iov` describes `hdr` and `f`, live and only read here.
        let (ok, bad) = unsafe { run_batch(ring, fd, Op::Write, iovs, want)? };
        sent += ok;
        refused += bad;
    }
    let ns = t.elapsed().as_nanos() as f64;
    Ok(Outcome {
        ns_per_frame: ns / f64::from(rounds * batch),
        sent,
        refused,
    })
}

/// A packet socket sending out of interface `ifname`: what it sends, the
/// TAP's reader receives.
fn packet_socket(ifname: &str) -> std::io::Result<OwnedFd> {
    let name = std::ffi::CString::new(ifname).map_err(std::io::Error::other)?;
    // SAFETY: a NUL-terminated name; the result is checked.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: plain socket creation; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an all-zero `sockaddr_ll` is valid; the fields that matter are set.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a `sockaddr_ll` of the size passed, alive for the call.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Queue `n` copies of `f` on the TAP (out of the interface through `sock`).
fn queue_frames(sock: &OwnedFd, f: &[u8], n: u32) -> std::io::Result<()> {
    for _ in 0..n {
        // SAFETY: `f` is a live buffer of the length passed.
        let r = unsafe { libc::send(sock.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Read `frames` frames through `TapBackend::receive`, [`QUEUED`] queued at
/// a time.
fn read_per_frame(
    tap: &mut TapBackend,
    sock: &OwnedFd,
    f: &[u8],
    frames: u32,
) -> std::io::Result<Outcome> {
    let mut buf = vec![0u8; 2048];
    let (mut got, mut missing) = (0u64, 0u64);
    let mut ns = 0u128;
    for _ in 0..frames / QUEUED {
        queue_frames(sock, f, QUEUED)?;
        let t = Instant::now();
        for _ in 0..QUEUED {
            match tap.receive(&mut buf) {
                Ok(Some(_)) => got += 1,
                Ok(None) | Err(_) => missing += 1,
            }
        }
        ns += t.elapsed().as_nanos();
    }
    Ok(Outcome {
        ns_per_frame: ns as f64 / f64::from(frames / QUEUED * QUEUED),
        sent: got,
        refused: missing,
    })
}

/// Read `frames` frames as `io_uring` batches of `batch` `readv` requests
/// (header, frame: the iovecs of `TapBackend::receive`), [`QUEUED`] queued
/// at a time.
fn read_batched(
    ring: &mut IoUring,
    fd: RawFd,
    sock: &OwnedFd,
    f: &[u8],
    frames: u32,
    batch: u32,
) -> std::io::Result<Outcome> {
    let mut hdrs = vec![[0u8; VNET_HDR_LEN]; batch as usize];
    let mut bufs = vec![[0u8; 2048]; batch as usize];
    let iovs: Vec<[libc::iovec; 2]> = hdrs
        .iter_mut()
        .zip(bufs.iter_mut())
        .map(|(h, b)| {
            [
                libc::iovec {
                    iov_base: h.as_mut_ptr().cast(),
                    iov_len: h.len(),
                },
                libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                },
            ]
        })
        .collect();
    let want = (VNET_HDR_LEN + f.len()) as i32;
    let (mut got, mut missing) = (0u64, 0u64);
    let mut ns = 0u128;
    for _ in 0..frames / QUEUED {
        queue_frames(sock, f, QUEUED)?;
        let t = Instant::now();
        let mut left = QUEUED;
        while left > 0 {
            let n = left.min(batch);
            // SAFETY: each of `iovs` describes one of `hdrs` and one of
            // `bufs`, live and touched by nothing else during the call.
            let (ok, bad) =
                unsafe { run_batch(ring, fd, Op::Read, iovs.iter().take(n as usize), want)? };
            got += ok;
            missing += bad;
            left -= n;
        }
        ns += t.elapsed().as_nanos();
    }
    Ok(Outcome {
        ns_per_frame: ns as f64 / f64::from(frames / QUEUED * QUEUED),
        sent: got,
        refused: missing,
    })
}

fn run(args: &Args) -> std::io::Result<()> {
    let mut tap = TapBackend::open(&args.tap)?;
    let fd = tap
        .rx_fd()
        .ok_or_else(|| std::io::Error::other("the TAP backend has no file descriptor"))?;
    let mut ring = IoUring::new(args.batch.next_power_of_two())?;
    let sock = packet_socket(&args.tap)?;
    println!(
        "TAP {}: {} frames per measurement, io_uring batches of {}, \
         lowest of {} alternated runs",
        tap.name(),
        args.frames,
        args.batch,
        args.runs
    );
    let mut rows = Vec::new();
    for &size in &args.sizes {
        let f = frame(usize::from(size));
        let mut best = [f64::INFINITY; 4];
        let mut lost = 0u64;
        for _ in 0..args.runs {
            let outcomes = [
                per_frame(&mut tap, &f, args.frames),
                batched(&mut ring, fd, &f, args.frames, args.batch)?,
                read_per_frame(&mut tap, &sock, &f, args.frames)?,
                read_batched(&mut ring, fd, &sock, &f, args.frames, args.batch)?,
            ];
            for (b, o) in best.iter_mut().zip(&outcomes) {
                if o.sent == 0 {
                    return Err(std::io::Error::other(format!(
                        "no frame of {size} B went through {} (is it up?)",
                        args.tap
                    )));
                }
                *b = b.min(o.ns_per_frame);
                lost += o.refused;
            }
        }
        rows.push((size, best, lost));
    }
    println!();
    println!(
        "| frame | write: writev per frame | write: io_uring batch | batch / per frame \
         | read: readv per frame | read: io_uring batch | batch / per frame | refused or missing |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (size, [w1, wb, r1, rb], lost) in rows {
        println!(
            "| {size} B | {w1:.0} ns | {wb:.0} ns | {:.2} | {r1:.0} ns | {rb:.0} ns | {:.2} | {lost} |",
            wb / w1,
            rb / r1
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tap_batch: {e}");
            ExitCode::FAILURE
        }
    }
}
