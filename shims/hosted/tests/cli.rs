//! The `virtnet-vhost-user` binary: its flags, its one-line errors and exit
//! codes, stale-socket handling, and a clean exit with counters on SIGTERM
//! after serving a frontend.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use virtnet::features::Features;

const BIN: &str = env!("CARGO_BIN_EXE_virtnet-vhost-user");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn one_line_error(o: &Output, code: i32) -> String {
    assert_eq!(o.status.code(), Some(code), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("virtnet-vhost-user: "), "{err}");
    err
}

#[test]
fn bad_flags_fail_with_one_line_and_exit_2() {
    for args in [
        &[][..],
        &["--socket", "/tmp/x.sock", "--backend", "udp:1"],
        &["--socket", "/tmp/x.sock", "--mac", "52:54:00:12:34"],
        &["--socket", "/tmp/x.sock", "--mac", "01:00:00:00:00:01"],
        &["--socket", "/tmp/x.sock", "--mtu", "20"],
        &["--socket", "/tmp/x.sock", "--stats-interval", "0"],
        &["--socket", "/tmp/x.sock", "--budget", "0"],
        &["--socket", "/tmp/x.sock", "--budget", "65537"],
        &["--socket", "/tmp/x.sock", "--frobnicate"],
    ] {
        let e = one_line_error(&run(args), 2);
        assert!(e.contains("error"), "{args:?}: {e}");
    }
    let help = run(&["--help"]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--socket",
        "--backend",
        "--mac",
        "--mtu",
        "--poll",
        "--budget",
        "--stats-interval",
        "-v",
    ] {
        assert!(help.contains(flag), "{flag} in --help");
    }
}

#[test]
fn unusable_paths_and_backends_fail_with_one_line_and_exit_1() {
    let e = one_line_error(&run(&["--socket", "/nonexistent/dir/x.sock"]), 1);
    assert!(e.contains("/nonexistent/dir/x.sock"), "{e}");
    // A file that is not a socket is never removed.
    let f = socket_path("cli-file");
    std::fs::write(&f, b"keep me").unwrap();
    one_line_error(&run(&["--socket", f.to_str().unwrap()]), 1);
    assert_eq!(std::fs::read(&f).unwrap(), b"keep me");
    std::fs::remove_file(&f).unwrap();
    // A socket something listens on.
    let live = socket_path("cli-live");
    let _l = UnixListener::bind(&live).unwrap();
    let e = one_line_error(&run(&["--socket", live.to_str().unwrap()]), 1);
    assert!(e.contains("listens"), "{e}");
    std::fs::remove_file(&live).unwrap();
    // A TAP that cannot be opened, a stream peer that is not there.
    let s = socket_path("cli-tap");
    let e = one_line_error(
        &run(&[
            "--socket",
            s.to_str().unwrap(),
            "--backend",
            "tap:name/with/slash",
        ]),
        1,
    );
    assert!(e.contains("TAP"), "{e}");
    let e = one_line_error(
        &run(&[
            "--socket",
            s.to_str().unwrap(),
            "--backend",
            "stream:/nonexistent.sock",
        ]),
        1,
    );
    assert!(e.contains("stream"), "{e}");
}

fn spawn(args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut c = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(c.stdout.take().unwrap());
    (c, out)
}

#[test]
fn stale_socket_is_replaced_and_sigterm_prints_the_counters() {
    let path = socket_path("cli-stale");
    // A socket file nobody listens on any more.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let (mut child, mut out) = spawn(&[
        "--socket",
        path.to_str().unwrap(),
        "--backend",
        "loopback",
        "--mac",
        "52:54:00:aa:bb:cc",
    ]);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    assert!(line.contains("backend loopback"), "{line}");
    // Serve one frontend end to end.
    let mut f = connect(&path, 2);
    let offered = Features::from_bits_truncate(negotiate(&mut f, Features::VERSION_1));
    assert!(offered.contains(Features::MAC));
    assert!(
        offered.contains(Features::HOST_TSO4 | Features::GUEST_TSO4),
        "64 KiB slots offer TSO with loopback: {offered:?}"
    );
    roundtrip(&mut f, 20);
    drop(f);
    // SIGTERM: clean exit, counters on stdout, socket file removed.
    let t = Instant::now();
    // SAFETY: sends a signal to our own child process; no memory involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    while out.read_line(&mut rest).unwrap() > 0 {}
    assert!(rest.contains("stopped; tx 20 pkts"), "{rest}");
    assert!(rest.contains("rx 20 pkts"), "{rest}");
    assert!(!path.exists(), "socket file removed on exit");
}
