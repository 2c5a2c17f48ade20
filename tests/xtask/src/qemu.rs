//! Launching a Linux guest in `qemu-system-x86_64` (TCG) with its serial
//! console piped to us.
//!
//! ```no_run
//! # fn demo(assets: &xtask::guest::GuestAssets, initrd: &xtask::guest::Initramfs) -> anyhow::Result<()> {
//! use std::time::Duration;
//! use xtask::qemu::{Net, Qemu, QemuConfig};
//! let mut cfg = QemuConfig::new(assets.vmlinuz(), initrd.path());
//! cfg.net = Net::vhost_user("/tmp/virtnet.sock", "mrg_rxbuf=off");
//! let mut vm = Qemu::spawn(&cfg)?;          // killed when `vm` is dropped
//! vm.wait_for(xtask::guest::READY_MARKER, Duration::from_secs(60))?;
//! vm.send_line("ip -o link")?;
//! let out = vm.wait_for("eth0", Duration::from_secs(10))?;
//! # Ok(()) }
//! ```
//!
//! Only one thing is sent on the console: what [`Qemu::send_line`] writes.
//! `-nographic` multiplexes QEMU's monitor on the same stdio: do not send
//! Ctrl-A (`\x01`).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::take_through_line;
use anyhow::{bail, Context, Result};

/// The kernel command line every guest gets; [`QemuConfig::append`] is added after it.
pub const BASE_APPEND: &str = "console=ttyS0 quiet panic=-1";

/// The guest's NIC. `romfile=` leaves out the iPXE option ROM, which only
/// network booting needs: that saves about 2.5 s of boot under TCG.
pub const NIC: &str = "virtio-net-pci,netdev=n0,romfile=";

/// How the guest's virtio-net device is backed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Net {
    /// No network device at all (`-nic none`).
    #[default]
    None,
    /// QEMU's built-in user network behind a virtio-net-pci device.
    User,
    /// A vhost-user backend listening on `socket` (started before QEMU),
    /// behind a virtio-net-pci device; guest RAM is a shared memfd.
    VhostUser {
        /// The backend's UNIX socket.
        socket: PathBuf,
        /// Extra `-device virtio-net-pci` options, comma-separated, without
        /// a leading comma (e.g. `mrg_rxbuf=off,packed=on`); may be empty.
        device_options: String,
    },
}

impl Net {
    /// Shorthand for [`Net::VhostUser`].
    pub fn vhost_user(socket: impl Into<PathBuf>, device_options: &str) -> Net {
        Net::VhostUser {
            socket: socket.into(),
            device_options: device_options.to_string(),
        }
    }
}

/// Everything that goes on QEMU's command line.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// The kernel image (`-kernel`).
    pub kernel: PathBuf,
    /// The initramfs (`-initrd`).
    pub initrd: PathBuf,
    /// Extra kernel arguments, appended after [`BASE_APPEND`].
    pub append: String,
    /// Guest RAM in MiB (`-m`, and the memfd size for vhost-user). Default 512.
    pub memory_mb: u32,
    /// The network device.
    pub net: Net,
    /// Further raw QEMU arguments, appended last.
    pub extra_args: Vec<String>,
    /// Copy the console to our stdout as it arrives (default: on when the
    /// environment variable `VIRTNET_GUEST_ECHO` is set).
    pub echo: bool,
}

impl QemuConfig {
    /// A configuration with 512 MiB, no network and no extra arguments.
    pub fn new(kernel: impl Into<PathBuf>, initrd: impl Into<PathBuf>) -> QemuConfig {
        QemuConfig {
            kernel: kernel.into(),
            initrd: initrd.into(),
            append: String::new(),
            memory_mb: 512,
            net: Net::None,
            extra_args: Vec::new(),
            echo: std::env::var_os("VIRTNET_GUEST_ECHO").is_some(),
        }
    }

    /// The full argument list for `qemu-system-x86_64`.
    pub fn args(&self) -> Vec<String> {
        let mut append = BASE_APPEND.to_string();
        if !self.append.is_empty() {
            append.push(' ');
            append.push_str(&self.append);
        }
        let mut args: Vec<String> = [
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-nographic",
            "-no-reboot",
            "-vga",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend([
            "-m".into(),
            self.memory_mb.to_string(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            append,
        ]);
        match &self.net {
            Net::None => args.extend(["-nic".into(), "none".into()]),
            Net::User => args.extend([
                "-netdev".into(),
                "user,id=n0".into(),
                "-device".into(),
                NIC.into(),
            ]),
            Net::VhostUser {
                socket,
                device_options,
            } => {
                let mut device = NIC.to_string();
                if !device_options.is_empty() {
                    device.push(',');
                    device.push_str(device_options.trim_start_matches(','));
                }
                args.extend([
                    "-object".into(),
                    format!(
                        "memory-backend-memfd,id=mem,size={}M,share=on",
                        self.memory_mb
                    ),
                    "-numa".into(),
                    "node,memdev=mem".into(),
                    "-chardev".into(),
                    format!("socket,id=c0,path={}", socket.display()),
                    "-netdev".into(),
                    "vhost-user,id=n0,chardev=c0".into(),
                    "-device".into(),
                    device,
                ]);
            }
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The `qemu-system-x86_64` command (not started).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(self.args());
        cmd
    }
}

/// What the console reader thread shares with [`Qemu`].
#[derive(Default)]
struct ConsoleState {
    /// Everything QEMU printed (console and QEMU's own stderr), `\r` removed.
    log: Vec<u8>,
    /// The reader reached end of file: QEMU exited.
    eof: bool,
}

/// The console log plus a condition variable signalled on every change.
type Console = Arc<(Mutex<ConsoleState>, Condvar)>;

/// A running QEMU. Dropping it kills QEMU (SIGKILL) and reaps it; QEMU is
/// also killed if the thread that spawned it dies (`PR_SET_PDEATHSIG`), so
/// spawn it from a thread that outlives it (normally the main thread).
pub struct Qemu {
    child: Child,
    stdin: Option<ChildStdin>,
    console: Console,
    /// Offset in the log up to which [`Qemu::wait_for`] has consumed output.
    cursor: usize,
    started: Instant,
    reader: Option<JoinHandle<()>>,
    command_line: String,
}

impl Qemu {
    /// Starts QEMU with `cfg`, its stdout and stderr collected into the
    /// console log, its stdin writable with [`Qemu::send_line`].
    pub fn spawn(cfg: &QemuConfig) -> Result<Qemu> {
        let mut cmd = cfg.command();
        let command_line = crate::util::display(&cmd);
        println!("$ {command_line}");
        let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
        let writer2 = writer.try_clone()?;
        cmd.stdin(Stdio::piped()).stdout(writer).stderr(writer2);
        // SAFETY: the closure only calls prctl, which is async-signal-safe,
        // and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().context(
            "cannot start qemu-system-x86_64 (is QEMU installed? see GuestAssets::ensure)",
        )?;
        drop(cmd); // closes our copies of the pipe's write end
        let stdin = child.stdin.take();
        let console: Console = Arc::default();
        let shared = Arc::clone(&console);
        let echo = cfg.echo;
        let reader = std::thread::spawn(move || read_console(reader, &shared, echo));
        Ok(Qemu {
            child,
            stdin,
            console,
            cursor: 0,
            started: Instant::now(),
            reader: Some(reader),
            command_line,
        })
    }

    /// Waits until the console shows `pattern` (a plain substring) after
    /// what earlier calls consumed. Returns the console output from the end
    /// of the previous match up to the end of the line holding this match
    /// (so its last line is the matching one), and consumes it.
    ///
    /// Fails on timeout or when QEMU exits first; the error holds the whole
    /// console log.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.console;
        let mut state = lock.lock().unwrap();
        loop {
            if let Some(text) = take_through_line(&state.log, &mut self.cursor, pattern) {
                return Ok(text);
            }
            if state.eof {
                drop(state);
                let status = self.child.wait().ok();
                bail!(
                    "QEMU exited ({}) before the console showed `{pattern}`\n{}",
                    status.map_or("status unknown".into(), |s| s.to_string()),
                    self.describe()
                );
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                bail!(
                    "timed out after {:.1} s waiting for `{pattern}` on the guest console\n{}",
                    timeout.as_secs_f64(),
                    self.describe()
                );
            }
            state = cond.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// Sends `line` and a newline to the guest's serial console.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("QEMU's stdin is closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .context("writing to the guest console")
    }

    /// Everything the console (and QEMU on stderr) printed so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.console.0.lock().unwrap().log).into_owned()
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for QEMU to exit by itself (e.g. the guest ran
    /// `poweroff -f`); kills it and fails if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "QEMU did not exit within {:.1} s; killed it\n{}",
                    timeout.as_secs_f64(),
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills QEMU now (idempotent) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// The command line and the whole console log, for error messages.
    fn describe(&self) -> String {
        format!(
            "QEMU command: {}\n----- console log -----\n{}\n----- end of console log -----",
            self.command_line,
            self.log().trim_end()
        )
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies QEMU's output into the shared log until end of file.
fn read_console(mut pipe: std::io::PipeReader, console: &Console, echo: bool) {
    let mut buf = [0u8; 4096];
    let (lock, cond) = &**console;
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk: Vec<u8> = buf[..n].iter().copied().filter(|&b| b != b'\r').collect();
        if echo {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&chunk);
            let _ = out.flush();
        }
        lock.lock().unwrap().log.extend_from_slice(&chunk);
        cond.notify_all();
    }
    lock.lock().unwrap().eof = true;
    cond.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::find;

    #[test]
    fn user_net_command_line() {
        let mut cfg = QemuConfig::new("/k", "/i");
        cfg.net = Net::User;
        let args = cfg.args().join(" ");
        assert_eq!(
            args,
            "-accel tcg -cpu max -nographic -no-reboot -vga none -m 512 -kernel /k -initrd /i \
             -append console=ttyS0 quiet panic=-1 -netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile="
        );
    }

    #[test]
    fn vhost_user_command_line() {
        let mut cfg = QemuConfig::new("/k", "/i");
        cfg.net = Net::vhost_user("/tmp/s.sock", "mrg_rxbuf=off,packed=on");
        cfg.append = "virtnet.test=1".into();
        let args = cfg.args().join(" ");
        assert!(args.contains("-append console=ttyS0 quiet panic=-1 virtnet.test=1"));
        assert!(args.ends_with(
            "-object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
             -chardev socket,id=c0,path=/tmp/s.sock -netdev vhost-user,id=n0,chardev=c0 \
             -device virtio-net-pci,netdev=n0,romfile=,mrg_rxbuf=off,packed=on"
        ));
    }

    #[test]
    fn finds_substrings() {
        assert_eq!(find(b"abc READY\n", b"READY"), Some(4));
        assert_eq!(find(b"abc", b"abcd"), None);
    }

    #[test]
    fn takes_output_through_the_matching_line() {
        let log = b"boot\nREADY now\nmore";
        let mut cursor = 0;
        assert_eq!(
            take_through_line(log, &mut cursor, "READY").as_deref(),
            Some("boot\nREADY now\n")
        );
        assert_eq!(cursor, 15);
        assert_eq!(take_through_line(log, &mut cursor, "READY"), None);
        assert_eq!(cursor, 15);
        // A match on the last, unfinished line takes the rest.
        assert_eq!(
            take_through_line(log, &mut cursor, "mo").as_deref(),
            Some("more")
        );
        assert_eq!(cursor, log.len());
    }
}
