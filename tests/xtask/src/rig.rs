//! Harness for the real-peer runs (`cargo xtask test linux|dpdk`,
//! `cargo xtask demo`, `cargo xtask bench dpdk`): child processes whose
//! output is collected and searchable ([`Proc`]), the `virtnet-vhost-user`
//! binary, clean-up on Ctrl-C ([`install_interrupt_handler`]), and a Linux
//! guest under QEMU whose virtio-net is virtnet, with a TAP in a network
//! namespace on the host side ([`LinuxRig`], [`Guest`]).
//!
//! Everything started here is stopped by a drop guard (children killed and
//! reaped, namespaces deleted, files removed), and, after
//! [`install_interrupt_handler`], also on SIGINT/SIGTERM, which do not run
//! drop guards.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::ctx::Ctx;
use crate::guest::{init_script, ExtraFile, GuestAssets, Initramfs, READY_MARKER};
use crate::install::ensure_apt;
use crate::netns::Netns;
use crate::qemu::{Net, Qemu, QemuConfig};
use crate::util::{capture, capture_stdout, run_ok, take_through_line};

// ---------------------------------------------------------------------------
// Clean-up on interruption.

/// Something to undo if the process is interrupted.
#[derive(Debug, Clone)]
enum Undo {
    /// Kill this process (SIGTERM, then SIGKILL).
    Pid(u32),
    /// `ip netns delete` this namespace.
    Netns(String),
    /// Remove this file.
    File(PathBuf),
}

/// What is registered now, by registration id.
static REGISTRY: Mutex<BTreeMap<u64, Undo>> = Mutex::new(BTreeMap::new());
/// The next registration id.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A registration with the interrupt handler; dropping it unregisters
/// (the owner has cleaned up by itself by then).
#[derive(Debug)]
pub struct Registration(u64);

impl Registration {
    fn new(undo: Undo) -> Registration {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        lock_registry().insert(id, undo);
        Registration(id)
    }

    /// Kill process `pid` if interrupted.
    pub fn pid(pid: u32) -> Registration {
        Registration::new(Undo::Pid(pid))
    }

    /// Delete network namespace `name` if interrupted.
    pub fn netns(name: &str) -> Registration {
        Registration::new(Undo::Netns(name.to_string()))
    }

    /// Remove `path` if interrupted.
    pub fn file(path: &Path) -> Registration {
        Registration::new(Undo::File(path.to_path_buf()))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock_registry().remove(&self.0);
    }
}

fn lock_registry() -> std::sync::MutexGuard<'static, BTreeMap<u64, Undo>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Set once the interrupt handler ran.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs (once) a SIGINT/SIGTERM handler that kills every registered
/// process, deletes every registered namespace and file, and exits with
/// status 130. Drop guards do not run on a signal; this does their work.
pub fn install_interrupt_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let r = ctrlc::set_handler(|| {
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("\ninterrupted: stopping what was started and cleaning up");
            undo_all();
            eprintln!("cleaned up");
            std::process::exit(130);
        });
        if let Err(e) = r {
            eprintln!("warning: cannot install the Ctrl-C handler: {e}");
        }
    });
}

/// If the interrupt handler is running (the error at hand comes from the
/// children it killed, or from the terminal's SIGINT reaching them), waits
/// for it to finish and exit the process, so its clean-up is not cut short
/// and no misleading error is printed. Returns at once otherwise.
pub fn wait_if_interrupted() {
    // The children may see the terminal's SIGINT a moment before our handler
    // thread runs.
    if !INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(30));
    }
}

/// Undoes everything registered (processes first, then namespaces and files).
fn undo_all() {
    let items: Vec<Undo> = lock_registry().values().cloned().collect();
    let pids: Vec<i32> = items
        .iter()
        .filter_map(|u| match u {
            Undo::Pid(p) => i32::try_from(*p).ok(),
            _ => None,
        })
        .collect();
    for &pid in &pids {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for &pid in &pids {
        // SAFETY: as above; signal 0 only checks for existence.
        while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for u in &items {
        match u {
            Undo::Pid(_) => {}
            Undo::Netns(name) => {
                let _ = Command::new("ip")
                    .args(["netns", "delete", name])
                    .stderr(Stdio::null())
                    .status();
            }
            Undo::File(path) => {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// A file removed on drop (and on interruption).
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    _reg: Registration,
}

impl TempFile {
    /// Takes charge of `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> TempFile {
        let path = path.into();
        let _ = fs::remove_file(&path);
        let reg = Registration::file(&path);
        TempFile { path, _reg: reg }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A network namespace deleted on drop (and on interruption).
#[derive(Debug)]
pub struct Namespace {
    /// The namespace (deleted when dropped).
    pub ns: Netns,
    _reg: Registration,
}

impl Namespace {
    /// Creates namespace `name` (see [`Netns::create`]).
    pub fn create(name: &str) -> Result<Namespace> {
        let reg = Registration::netns(name);
        let ns = Netns::create(name)?;
        Ok(Namespace { ns, _reg: reg })
    }
}

// ---------------------------------------------------------------------------
// Child processes with collected output.

/// Output collected from a child, and whether it has ended.
#[derive(Default)]
struct OutState {
    text: Vec<u8>,
    eof: bool,
}

type Shared = Arc<(Mutex<OutState>, Condvar)>;

/// A child process whose stdout and stderr (merged) are collected, and
/// optionally echoed line by line with a prefix. Dropping it stops the
/// child (SIGTERM, then SIGKILL after 3 s) and reaps it; the child also
/// gets SIGKILL if the thread that started it dies.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    out: Shared,
    cursor: usize,
    reader: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
    _reg: Registration,
}

impl Proc {
    /// Starts `cmd` (echoing its command line). `echo`: copy its output to
    /// our stdout, each line prefixed with `[name] `. `stdin`: keep a pipe
    /// to its stdin ([`Proc::send`]), else /dev/null.
    pub fn spawn(name: &str, cmd: &mut Command, echo: bool, stdin: bool) -> Result<Proc> {
        let line = crate::util::display(cmd);
        println!("$ {line}");
        let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
        let writer2 = writer.try_clone()?;
        cmd.stdout(writer).stderr(writer2);
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        // SAFETY: the closure only calls prctl, which is async-signal-safe
        // and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{line}`"))?;
        // Drop our copies of the write end so the reader sees EOF.
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let reg = Registration::pid(child.id());
        let stdin = child.stdin.take();
        let out: Shared = Arc::default();
        let shared = Arc::clone(&out);
        let prefix = format!("[{name}] ");
        let reader = std::thread::spawn(move || collect(reader, &shared, echo.then_some(prefix)));
        Ok(Proc {
            name: name.to_string(),
            child,
            stdin,
            out,
            cursor: 0,
            reader: Some(reader),
            status: None,
            _reg: reg,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes `line` and a newline to the child's stdin.
    pub fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("no stdin pipe")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .with_context(|| format!("writing to {}", self.name))
    }

    /// Everything the child printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.0.lock().unwrap().text).into_owned()
    }

    /// Waits until the output after what earlier calls consumed holds
    /// `pattern`; returns (and consumes) the output up to the end of that
    /// line. Fails on timeout or when the child's output ends first.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.out;
        let mut st = lock.lock().unwrap();
        loop {
            if let Some(text) = take_through_line(&st.text, &mut self.cursor, pattern) {
                return Ok(text);
            }
            if st.eof {
                let text = String::from_utf8_lossy(&st.text).into_owned();
                bail!(
                    "{} ended before printing `{pattern}`; its output:\n{}",
                    self.name,
                    text.trim_end()
                );
            }
            let now = Instant::now();
            if now >= deadline {
                let text = String::from_utf8_lossy(&st.text).into_owned();
                bail!(
                    "{} did not print `{pattern}` within {:.0} s; its output:\n{}",
                    self.name,
                    timeout.as_secs_f64(),
                    text.trim_end()
                );
            }
            st = cond.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// Whether the child has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Sends `sig` to the child (if it still runs).
    pub fn signal(&mut self, sig: i32) {
        if self.exited().is_none() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: kill has no memory-safety preconditions; the child
                // is not reaped yet, so the pid is still ours.
                unsafe { libc::kill(pid, sig) };
            }
        }
    }

    /// Waits up to `timeout` for the child to exit; `None` if it did not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                self.join_reader();
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the child: `sig`, then SIGKILL if it has not exited within
    /// `timeout`. Returns its exit status and whether it exited by itself
    /// (before the SIGKILL).
    pub fn stop(&mut self, sig: i32, timeout: Duration) -> (Option<ExitStatus>, bool) {
        self.signal(sig);
        if let Some(s) = self.wait_exit(timeout) {
            return (Some(s), true);
        }
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
        self.join_reader();
        (self.status, false)
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.stop(libc::SIGTERM, Duration::from_secs(3));
        }
        self.join_reader();
    }
}

/// Copies a child's output into `out` (and our stdout, prefixed) until EOF.
fn collect(pipe: std::io::PipeReader, out: &Shared, echo: Option<String>) {
    let (lock, cond) = &**out;
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Some(prefix) = &echo {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(prefix.as_bytes());
            let _ = o.write_all(&line);
            if !line.ends_with(b"\n") {
                let _ = o.write_all(b"\n");
            }
            let _ = o.flush();
        }
        lock.lock().unwrap().text.extend_from_slice(&line);
        cond.notify_all();
    }
    lock.lock().unwrap().eof = true;
    cond.notify_all();
}

// ---------------------------------------------------------------------------
// The virtnet-vhost-user binary.

/// Builds `virtnet-vhost-user` (release) and returns its path.
pub fn build_backend(ctx: &Ctx) -> Result<PathBuf> {
    build_hosted(ctx, "--bin", "virtnet-vhost-user")
}

/// Builds target `name` of package `virtnet-hosted` in release, where
/// `kind` is `--bin` or `--example`, and returns its path.
pub fn build_hosted(ctx: &Ctx, kind: &str, name: &str) -> Result<PathBuf> {
    run_ok(ctx.cargo().args([
        "build",
        "--release",
        "-q",
        "-p",
        "virtnet-hosted",
        kind,
        name,
    ]))?;
    let dir = if kind == "--example" {
        "release/examples"
    } else {
        "release"
    };
    let bin = ctx.target_dir().join(dir).join(name);
    ensure!(bin.is_file(), "{} was not built", bin.display());
    Ok(bin)
}

/// The counters `virtnet-vhost-user` prints when it stops
/// (`stopped; tx N pkts N bytes (dropped N: ...); rx N pkts N bytes (dropped N: ...); queue errors N, ...`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackendCounters {
    /// Frames the guest sent that reached the backend.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// TX frames dropped (all reasons).
    pub tx_dropped: u64,
    /// Frames delivered to the guest.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// RX frames dropped (all reasons).
    pub rx_dropped: u64,
    /// Queues that broke.
    pub queue_errors: u64,
}

impl BackendCounters {
    /// Parses the counters out of the backend's `stopped;` (or `stats:`) line.
    pub fn parse(line: &str) -> Option<BackendCounters> {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| {
                w.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                    .to_string()
            })
            .collect();
        let num = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
        let mut c = BackendCounters::default();
        let (mut tx, mut rx, mut q) = (false, false, false);
        let mut dropped_seen = 0;
        for i in 0..words.len() {
            match words[i].as_str() {
                "tx" if !tx && words.get(i + 2).is_some_and(|w| w == "pkts") => {
                    c.tx_packets = num(i + 1)?;
                    c.tx_bytes = num(i + 3)?;
                    tx = true;
                }
                "rx" if !rx && words.get(i + 2).is_some_and(|w| w == "pkts") => {
                    c.rx_packets = num(i + 1)?;
                    c.rx_bytes = num(i + 3)?;
                    rx = true;
                }
                "dropped" => {
                    if dropped_seen == 0 {
                        c.tx_dropped = num(i + 1)?;
                    } else if dropped_seen == 1 {
                        c.rx_dropped = num(i + 1)?;
                    }
                    dropped_seen += 1;
                }
                "queue" if words.get(i + 1).is_some_and(|w| w == "errors") => {
                    c.queue_errors = num(i + 2)?;
                    q = true;
                }
                _ => {}
            }
        }
        (tx && rx && q && dropped_seen >= 2).then_some(c)
    }
}

/// A running `virtnet-vhost-user`.
pub struct Backend {
    /// The process (its output is the backend's log).
    pub proc: Proc,
    _socket: TempFile,
}

impl Backend {
    /// Starts `bin --socket SOCKET ARGS...` (inside `netns` if given),
    /// optionally pinned to `cpu` with `taskset`, and waits until it listens.
    pub fn start(
        bin: &Path,
        socket: &Path,
        args: &[&str],
        netns: Option<&Netns>,
        cpu: Option<u32>,
        echo: bool,
    ) -> Result<Backend> {
        let socket = TempFile::new(socket);
        let mut argv: Vec<String> = Vec::new();
        if let Some(cpu) = cpu {
            argv.extend(["taskset".into(), "-c".into(), cpu.to_string()]);
        }
        argv.push(bin.display().to_string());
        argv.extend(["--socket".into(), socket.path().display().to_string()]);
        argv.extend(args.iter().map(|s| s.to_string()));
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = ns.command(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        let mut proc = Proc::spawn("backend", &mut cmd, echo, false)?;
        proc.wait_for("listening on", Duration::from_secs(10))?;
        Ok(Backend {
            proc,
            _socket: socket,
        })
    }

    /// Stops the backend with SIGTERM and returns the counters it printed.
    /// Fails if it does not exit by itself with status 0 or prints no counters.
    pub fn stop(&mut self) -> Result<BackendCounters> {
        let (status, clean) = self.proc.stop(libc::SIGTERM, Duration::from_secs(10));
        let out = self.proc.output();
        ensure!(
            clean && status.is_some_and(|s| s.success()),
            "virtnet-vhost-user did not stop cleanly on SIGTERM ({status:?}); its log:\n{out}"
        );
        let line = out
            .lines()
            .rev()
            .find(|l| l.contains("stopped;"))
            .with_context(|| format!("virtnet-vhost-user printed no counters; its log:\n{out}"))?;
        BackendCounters::parse(line)
            .with_context(|| format!("cannot read the counters in `{line}`"))
    }

    /// The `features negotiated: ...` lines of the backend's log so far.
    pub fn negotiated(&self) -> Vec<String> {
        self.proc
            .output()
            .lines()
            .filter_map(|l| {
                l.split_once("features negotiated: ")
                    .map(|(_, f)| f.trim().to_string())
            })
            .collect()
    }
}

/// The feature names in a `Features(A | B | C)` rendering.
pub fn feature_names(rendered: &str) -> Vec<String> {
    let inner = rendered
        .split_once('(')
        .map_or(rendered, |(_, r)| r)
        .split(')')
        .next()
        .unwrap_or("");
    inner
        .split('|')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------
// A Linux guest on virtnet-vhost-user with a TAP in a namespace.

/// The host's address on the TAP, inside the namespace.
pub const HOST_ADDR: &str = "10.77.0.1";
/// The guest's address on eth0.
pub const GUEST_ADDR: &str = "10.77.0.2";
/// The prefix length of both.
pub const PREFIX: u32 = 24;
/// The MAC address given to the guest (backend and QEMU agree on it).
pub const GUEST_MAC: &str = "52:54:00:76:6e:01";
/// The TAP device inside the namespace.
pub const TAP: &str = "vntap0";
/// The guest's side of the tests (`tests/guest/vn.sh`, `/bin/vn` in the guest).
pub const GUEST_SCRIPT: &str = include_str!("../../guest/vn.sh");

/// What `vn` answered: its `VN-END` line and everything printed before it.
#[derive(Debug, Clone)]
pub struct VnReply {
    /// `VN-END ok ...`.
    pub ok: bool,
    /// The `VN-END` line.
    pub line: String,
    /// The console output of the command, echo included.
    pub output: String,
}

impl VnReply {
    /// The value of `key=value` on the `VN-END` line.
    pub fn field(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(prefix.as_str()))
    }
}

/// A Linux guest under QEMU (TCG) with virtio-net-pci on vhost-user.
pub struct Guest {
    /// QEMU (killed on drop).
    pub vm: Qemu,
    _reg: Registration,
}

impl Guest {
    /// Boots the guest with `initrd` on vhost-user `socket`, virtio-net-pci
    /// options `device_options` (the MAC is added), and waits until its
    /// virtio modules are loaded. `reboot`: a guest reboot resets the
    /// machine (same QEMU, same vhost-user connection) instead of ending QEMU.
    pub fn boot(
        assets: &GuestAssets,
        initrd: &Initramfs,
        socket: &Path,
        device_options: &str,
        reboot: bool,
    ) -> Result<Guest> {
        let mut cfg = QemuConfig::new(assets.vmlinuz(), initrd.path());
        let mut opts = format!("mac={GUEST_MAC}");
        if !device_options.is_empty() {
            opts.push(',');
            opts.push_str(device_options);
        }
        cfg.net = Net::vhost_user(socket, &opts);
        cfg.memory_mb = 512;
        if reboot {
            // Later `-action` options override `-no-reboot`'s `reboot=shutdown`.
            cfg.extra_args
                .extend(["-action".to_string(), "reboot=reset".to_string()]);
        }
        let vm = Qemu::spawn(&cfg)?;
        let reg = Registration::pid(vm.pid());
        let mut guest = Guest { vm, _reg: reg };
        guest.wait_ready()?;
        Ok(guest)
    }

    /// Waits for the guest's init to have loaded the virtio modules (after
    /// a boot or a reboot).
    pub fn wait_ready(&mut self) -> Result<()> {
        self.vm.wait_for(READY_MARKER, Duration::from_secs(120))?;
        // The shell prompt follows; a line typed earlier waits in the tty.
        Ok(())
    }

    /// Runs `vn ARGS` in the guest and waits up to `timeout` for its answer.
    pub fn vn(&mut self, args: &str, timeout: Duration) -> Result<VnReply> {
        self.vm.send_line(&format!("vn {args}"))?;
        self.wait_end(timeout)
    }

    /// Waits for the next whole `VN-END` line.
    fn wait_end(&mut self, timeout: Duration) -> Result<VnReply> {
        let output = self.wait_line("VN-END ", timeout)?;
        let line = output
            .lines()
            .rev()
            .find(|l| l.contains("VN-END "))
            .map(|l| l[l.find("VN-END ").unwrap_or(0)..].trim().to_string())
            .unwrap_or_default();
        Ok(VnReply {
            ok: line.starts_with("VN-END ok"),
            line,
            output,
        })
    }

    /// Like `Qemu::wait_for`, but also waits for the rest of the matching
    /// line (the console delivers lines in pieces).
    pub fn wait_line(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let mut out = self.vm.wait_for(pattern, timeout)?;
        if !out.ends_with('\n') {
            out.push_str(&self.vm.wait_for("\n", timeout)?);
        }
        Ok(out)
    }

    /// Like [`Guest::vn`] but fails unless the answer is `ok`.
    pub fn vn_ok(&mut self, args: &str, timeout: Duration) -> Result<VnReply> {
        let r = self.vn(args, timeout)?;
        ensure!(
            r.ok,
            "guest command `vn {args}` failed: {}\n{}",
            r.line,
            r.output.trim_end()
        );
        Ok(r)
    }
}

/// The guest initramfs for the rigs: busybox, the virtio modules, `/bin/vn`,
/// and an init that starts a shell on the console.
pub fn build_initramfs(assets: &GuestAssets) -> Result<Initramfs> {
    let init = init_script("exec sh\n");
    let extra = [ExtraFile::from_bytes("/bin/vn", GUEST_SCRIPT, 0o755)];
    Initramfs::build(
        assets,
        &init,
        &extra,
        &assets.dir().join("virtnet-vn.cpio.gz"),
    )
}

/// One timed bulk transfer.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Bytes the receiver got.
    pub bytes: u64,
    /// Seconds from the start to the receiver having everything.
    pub secs: f64,
    /// SHA-256 at the sender.
    pub sent_sha: String,
    /// SHA-256 at the receiver.
    pub received_sha: String,
    /// Bytes the sender sent.
    pub sent_bytes: u64,
}

impl Transfer {
    /// Whether sizes and checksums match.
    pub fn intact(&self) -> bool {
        self.bytes == self.sent_bytes && self.sent_sha == self.received_sha
    }

    /// Throughput in MiB/s.
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.secs.max(1e-9)
    }

    /// One line: bytes, time, rate, checksums.
    pub fn summary(&self) -> String {
        format!(
            "{:.1} MiB in {:.2} s = {:.1} MiB/s ({:.0} Mbit/s); sha256 sent {} received {}{}",
            self.bytes as f64 / (1 << 20) as f64,
            self.secs,
            self.mib_per_s(),
            self.mib_per_s() * 8.388608,
            short(&self.sent_sha),
            short(&self.received_sha),
            if self.intact() {
                " (equal)"
            } else {
                " (DIFFERENT)"
            }
        )
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(16)]
}

/// The host side: a namespace with a TAP holding [`HOST_ADDR`], and the
/// backend serving it; plus a file of random bytes to send to guests.
pub struct LinuxRig {
    /// The backend (drop stops it; [`Backend::stop`] gets its counters).
    pub backend: Backend,
    /// The namespace (dropped after the backend).
    pub ns: Namespace,
    /// The vhost-user socket.
    pub socket: PathBuf,
    tx_file: Option<(TempFile, u64, String)>,
    rx_file: TempFile,
}

/// A TCP port for guest → host transfers.
const PORT_TO_HOST: u16 = 5001;
/// A TCP port for host → guest transfers.
const PORT_TO_GUEST: u16 = 5002;

impl LinuxRig {
    /// Creates namespace `<name>-<our pid>` (unique: another checkout may
    /// run the same suite at the same time) with [`TAP`] at
    /// [`HOST_ADDR`]/[`PREFIX`] and starts `bin --backend tap:TAP` in it
    /// (`extra_args` added).
    pub fn start(bin: &Path, name: &str, extra_args: &[&str], echo: bool) -> Result<LinuxRig> {
        ensure_apt(&["socat", "iproute2", "iputils-ping", "coreutils"])?;
        let name = format!("{name}-{}", std::process::id());
        let name = name.as_str();
        let ns = Namespace::create(name)?;
        ns.ns.add_tap(TAP)?;
        run_ok(
            &mut ns
                .ns
                .ip(&["addr", "add", &format!("{HOST_ADDR}/{PREFIX}"), "dev", TAP]),
        )?;
        let socket = std::env::temp_dir().join(format!("{name}.sock"));
        let backend_spec = format!("--backend=tap:{TAP}");
        let mac = format!("--mac={GUEST_MAC}");
        let mut args = vec![backend_spec.as_str(), mac.as_str()];
        args.extend(extra_args);
        let backend = Backend::start(bin, &socket, &args, Some(&ns.ns), None, echo)?;
        let rx_file =
            TempFile::new(std::env::temp_dir().join(format!("{name}-{}.rx", std::process::id())));
        Ok(LinuxRig {
            backend,
            ns,
            socket,
            tx_file: None,
            rx_file,
        })
    }

    /// Makes (once) the file of `mib` MiB of random bytes the host sends.
    fn tx_file(&mut self, mib: u64) -> Result<(PathBuf, u64, String)> {
        if let Some((f, size, sha)) = &self.tx_file {
            if *size == mib << 20 {
                return Ok((f.path().to_path_buf(), *size, sha.clone()));
            }
        }
        let file = TempFile::new(self.rx_file.path().with_extension(format!("{mib}M.tx")));
        let mut random = fs::File::open("/dev/urandom")?;
        let mut out = fs::File::create(file.path())?;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..mib {
            random.read_exact(&mut buf)?;
            out.write_all(&buf)?;
        }
        drop(out);
        let sha = sha256_file(file.path())?;
        let entry = (file.path().to_path_buf(), mib << 20, sha.clone());
        self.tx_file = Some((file, mib << 20, sha));
        Ok(entry)
    }

    /// `ping -c COUNT` from the namespace to `addr`.
    pub fn ping_from_host(&self, addr: &str, count: u32) -> Result<(bool, String)> {
        let out = capture(self.ns.ns.command("ping").args([
            "-c",
            &count.to_string(),
            "-W",
            "2",
            "-i",
            "0.2",
            addr,
        ]))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.success(), text))
    }

    /// Waits until something in the namespace listens on TCP `port`.
    fn wait_listening(&self, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = capture_stdout(
                self.ns
                    .ns
                    .command("ss")
                    .args(["-Hltn", &format!("sport = :{port}")]),
            )?;
            if !out.trim().is_empty() {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "nothing listens on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The guest makes `mib` MiB of random data (`vn gen`) and sends it to
    /// the host over TCP; both sides' SHA-256 are compared.
    pub fn guest_to_host(&mut self, guest: &mut Guest, mib: u64) -> Result<Transfer> {
        let gen = guest.vn_ok(&format!("gen {mib}"), Duration::from_secs(120))?;
        let sent_sha = gen
            .field("sha256")
            .context("vn gen: no sha256")?
            .to_string();
        let sent_bytes: u64 = gen
            .field("bytes")
            .and_then(|b| b.parse().ok())
            .context("vn gen: no bytes")?;
        self.guest_file_to_host(guest, "/tmp/tx", sent_bytes, &sent_sha)
    }

    /// The guest sends back what the last [`LinuxRig::host_to_guest`] gave
    /// it (`/tmp/rx`, whose size and SHA-256 the guest computed then) to the
    /// host over TCP; the host's SHA-256 of what arrived is compared with
    /// the guest's. Saves generating and hashing another file under TCG.
    pub fn guest_to_host_echo(
        &mut self,
        guest: &mut Guest,
        previous: &Transfer,
    ) -> Result<Transfer> {
        self.guest_file_to_host(guest, "/tmp/rx", previous.bytes, &previous.received_sha)
    }

    /// The guest sends `file` (`sent_bytes` long, SHA-256 `sent_sha` as the
    /// guest computed it) to the host.
    fn guest_file_to_host(
        &mut self,
        guest: &mut Guest,
        file: &str,
        sent_bytes: u64,
        sent_sha: &str,
    ) -> Result<Transfer> {
        let sent_sha = sent_sha.to_string();
        let rx = self.rx_file.path().to_path_buf();
        let _ = fs::remove_file(&rx);
        let mut socat = Proc::spawn(
            "socat",
            self.ns.ns.command("socat").args([
                "-u".to_string(),
                format!("TCP-LISTEN:{PORT_TO_HOST},reuseaddr"),
                format!("CREATE:{}", rx.display()),
            ]),
            false,
            false,
        )?;
        self.wait_listening(PORT_TO_HOST)?;
        let t0 = Instant::now();
        guest
            .vm
            .send_line(&format!("vn send {HOST_ADDR} {PORT_TO_HOST} {file}"))?;
        let status = socat.wait_exit(Duration::from_secs(300));
        let secs = t0.elapsed().as_secs_f64();
        let reply = guest.wait_end(Duration::from_secs(60))?;
        ensure!(
            status.is_some_and(|s| s.success()),
            "socat (receiving in the namespace) failed or hung ({status:?}): {}\nguest: {}",
            socat.output(),
            reply.output.trim_end()
        );
        ensure!(
            reply.ok,
            "the guest's nc failed: {}",
            reply.output.trim_end()
        );
        let bytes = fs::metadata(&rx)?.len();
        let received_sha = sha256_file(&rx)?;
        let _ = fs::remove_file(&rx);
        Ok(Transfer {
            bytes,
            secs,
            sent_sha,
            received_sha,
            sent_bytes,
        })
    }

    /// The host sends `mib` MiB of random data to the guest over TCP; both
    /// sides' SHA-256 are compared.
    pub fn host_to_guest(&mut self, guest: &mut Guest, mib: u64) -> Result<Transfer> {
        let (file, sent_bytes, sent_sha) = self.tx_file(mib)?;
        guest.vm.send_line(&format!("vn recv {PORT_TO_GUEST}"))?;
        guest.vm.wait_for(
            &format!("VN-LISTEN {PORT_TO_GUEST}"),
            Duration::from_secs(30),
        )?;
        let t0 = Instant::now();
        let mut socat = Proc::spawn(
            "socat",
            self.ns.ns.command("socat").args([
                "-u".to_string(),
                format!("OPEN:{},rdonly", file.display()),
                format!("TCP:{GUEST_ADDR}:{PORT_TO_GUEST},retry=100,interval=0.05"),
            ]),
            false,
            false,
        )?;
        let status = socat.wait_exit(Duration::from_secs(300));
        ensure!(
            status.is_some_and(|s| s.success()),
            "socat (sending from the namespace) failed or hung ({status:?}): {}",
            socat.output()
        );
        let reply = guest.vn_answer(t0, Duration::from_secs(120))?;
        let secs = t0.elapsed().as_secs_f64();
        // The time is taken when nc in the guest has everything (VN-RECEIVED
        // comes before the guest's checksum); see `Guest::vn_answer`.
        let secs = reply.1.unwrap_or(secs);
        let reply = reply.0;
        ensure!(reply.ok, "the guest's nc -l failed: {}", reply.line);
        let bytes = reply
            .field("bytes")
            .and_then(|b| b.parse().ok())
            .context("vn recv: no bytes")?;
        let received_sha = reply
            .field("sha256")
            .context("vn recv: no sha256")?
            .to_string();
        Ok(Transfer {
            bytes,
            secs,
            sent_sha,
            received_sha,
            sent_bytes,
        })
    }
}

impl Guest {
    /// Waits for the answer of a `vn recv` already typed: returns it and the
    /// seconds since `t0` at which the guest printed `VN-RECEIVED`.
    fn vn_answer(&mut self, t0: Instant, timeout: Duration) -> Result<(VnReply, Option<f64>)> {
        let got = self.vm.wait_for("VN-RECEIVED", timeout);
        let at = got.is_ok().then(|| t0.elapsed().as_secs_f64());
        Ok((self.wait_end(timeout)?, at))
    }
}

/// `sha256sum FILE`.
pub fn sha256_file(path: &Path) -> Result<String> {
    let out = capture_stdout(Command::new("sha256sum").arg(path))?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .context("sha256sum printed nothing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_backend_counters() {
        let line = "virtnet-vhost-user: stopped; tx 10 pkts 1500 bytes (dropped 2: malformed chains 0, malformed frames 0, bad header 0, too big 0, backend 2; intercepted 0, sw csum 0); \
                    rx 7 pkts 700 bytes (dropped 1: too big 1, offload 0, backend 0; malformed chains 0, intercepted 0, waits 3); queue errors 0, notifications 9 (suppressed 1)";
        let c = BackendCounters::parse(line).unwrap();
        assert_eq!(
            c,
            BackendCounters {
                tx_packets: 10,
                tx_bytes: 1500,
                tx_dropped: 2,
                rx_packets: 7,
                rx_bytes: 700,
                rx_dropped: 1,
                queue_errors: 0
            }
        );
        assert_eq!(BackendCounters::parse("stopped; nothing"), None);
    }

    #[test]
    fn splits_feature_names() {
        assert_eq!(
            feature_names("Features(CSUM | MAC | VERSION_1)"),
            ["CSUM", "MAC", "VERSION_1"]
        );
        assert!(feature_names("Features(0x0)").len() == 1);
    }

    #[test]
    fn reads_vn_fields() {
        let r = VnReply {
            ok: true,
            line: "VN-END ok recv bytes=67108864 sha256=abc".into(),
            output: String::new(),
        };
        assert_eq!(r.field("bytes"), Some("67108864"));
        assert_eq!(r.field("sha256"), Some("abc"));
        assert_eq!(r.field("nope"), None);
    }
}
