//! The vhost-user server: a listening socket, one frontend at a time, and a
//! worker thread for the device's queue pair.
//!
//! Threads (spec 08, "Threading"):
//! - the *control* thread (the caller of [`Server::run`]) accepts a
//!   connection and hands each message to rust-vmm's `BackendReqHandler`,
//!   which calls [`DeviceState`]'s handler methods under the device lock;
//! - one *worker* thread per connection (the device has one queue pair)
//!   moves frames: it waits in `epoll` on the kick eventfds, the backend's fd
//!   and a wake-up eventfd (or spins, with `poll`), then takes the device
//!   lock for one bounded pass of TX and RX.
//!
//! When the frontend goes away the worker is stopped and joined, the device
//! is reset, its memory unmapped and every fd the frontend sent closed, and
//! the server accepts the next connection (I-HOST-3).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vhost::vhost_user::{BackendReqHandler, Error as VuError};
use vmm_sys_util::epoll::{ControlOperation, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use virtnet::device::{NetConfig, NetStats, NUM_QUEUES};
use virtnet::pool::FramePool;

use crate::backend::HostBackend;
use crate::device::{DeviceState, WorkerCtl, TOKEN_BACKEND, TOKEN_KICK, TOKEN_WAKE};

/// Chains (TX) or frames (RX) one worker pass handles per queue before it
/// looks at its events again.
pub const DEFAULT_BUDGET: usize = 64;

/// How the server runs.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    /// The device configuration (MAC, MTU, offered features, queue size).
    pub net: NetConfig,
    /// Busy-poll: the worker never sleeps and asks the driver not to kick.
    pub poll: bool,
    /// Worker budget per queue per pass.
    pub budget: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            net: NetConfig {
                queue_size_max: virtnet::queue::MAX_QUEUE_SIZE,
                ..NetConfig::default()
            },
            poll: false,
            budget: DEFAULT_BUDGET,
        }
    }
}

type Shared<'p, B, const SLOT: usize, const COUNT: usize> =
    Arc<Mutex<DeviceState<'p, B, SLOT, COUNT>>>;

fn lock<'a, 'p, B: HostBackend, const SLOT: usize, const COUNT: usize>(
    s: &'a Mutex<DeviceState<'p, B, SLOT, COUNT>>,
) -> MutexGuard<'a, DeviceState<'p, B, SLOT, COUNT>> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters of the server itself.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    closed: AtomicU64,
}

/// A handle to a running server: stop it, read its counters.
pub struct ServerHandle<'p, B: HostBackend, const SLOT: usize, const COUNT: usize> {
    shared: Shared<'p, B, SLOT, COUNT>,
    shutdown: Arc<EventFd>,
    counters: Arc<Counters>,
}

impl<B: HostBackend, const SLOT: usize, const COUNT: usize> Clone
    for ServerHandle<'_, B, SLOT, COUNT>
{
    fn clone(&self) -> Self {
        ServerHandle {
            shared: Arc::clone(&self.shared),
            shutdown: Arc::clone(&self.shutdown),
            counters: Arc::clone(&self.counters),
        }
    }
}

impl<B: HostBackend, const SLOT: usize, const COUNT: usize> ServerHandle<'_, B, SLOT, COUNT> {
    /// Ask [`Server::run`] to return (async-signal-safe: one `write`).
    pub fn shutdown(&self) {
        let _ = self.shutdown.write(1);
    }

    /// The device's counters (all connections together).
    pub fn stats(&self) -> NetStats {
        lock(&self.shared).stats()
    }

    /// Connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::Acquire)
    }

    /// Connections that ended and were cleaned up so far.
    pub fn connections_closed(&self) -> u64 {
        self.counters.closed.load(Ordering::Acquire)
    }

    /// Run `f` on the device state (for tests and diagnostics).
    pub fn with_state<R>(&self, f: impl FnOnce(&DeviceState<'_, B, SLOT, COUNT>) -> R) -> R {
        f(&lock(&self.shared))
    }
}

/// Why the server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum BindError {
    /// Something already listens on the path.
    InUse(PathBuf),
    /// The path exists and is not a socket.
    NotASocket(PathBuf),
    /// Binding or another system call failed.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::InUse(p) => write!(f, "{}: another process listens on it", p.display()),
            BindError::NotASocket(p) => {
                write!(
                    f,
                    "{}: exists and is not a socket (not removed)",
                    p.display()
                )
            }
            BindError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for BindError {}

/// Bind a listening socket at `path`. A stale socket file (nothing accepts
/// on it) is removed first; a live one or a non-socket file is an error.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(BindError::InUse(path.into())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                log::info!("removing stale socket {}", path.display());
                std::fs::remove_file(path).map_err(|e| BindError::Io(path.into(), e))?;
            }
            Err(e) => return Err(BindError::Io(path.into(), e)),
        },
        Ok(_) => return Err(BindError::NotASocket(path.into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(BindError::Io(path.into(), e)),
    }
    UnixListener::bind(path).map_err(|e| BindError::Io(path.into(), e))
}

/// A vhost-user-net backend serving one frontend at a time.
pub struct Server<'p, B: HostBackend, const SLOT: usize, const COUNT: usize> {
    listener: UnixListener,
    path: PathBuf,
    inode: Option<(u64, u64)>,
    config: ServerConfig,
    ctl: Arc<WorkerCtl>,
    handle: ServerHandle<'p, B, SLOT, COUNT>,
}

impl<'p, B: HostBackend, const SLOT: usize, const COUNT: usize> Server<'p, B, SLOT, COUNT> {
    /// A server on `listener` (see [`bind`]) for `backend`, with frame pools
    /// that live as long as the server.
    pub fn new(
        listener: UnixListener,
        path: PathBuf,
        config: ServerConfig,
        backend: B,
        rx_pool: &'p FramePool<SLOT, COUNT>,
        tx_pool: &'p FramePool<SLOT, COUNT>,
    ) -> io::Result<Self> {
        let ctl = Arc::new(WorkerCtl::new()?);
        let state = DeviceState::new(
            config.net,
            backend,
            rx_pool,
            tx_pool,
            config.poll,
            Arc::clone(&ctl),
        );
        let shutdown = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?;
        let inode = std::fs::symlink_metadata(&path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        Ok(Server {
            listener,
            path,
            inode,
            config,
            ctl,
            handle: ServerHandle {
                shared: Arc::new(Mutex::new(state)),
                shutdown: Arc::new(shutdown),
                counters: Arc::default(),
            },
        })
    }

    /// A handle to stop the server or read its counters from elsewhere.
    pub fn handle(&self) -> ServerHandle<'p, B, SLOT, COUNT> {
        self.handle.clone()
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The features offered to frontends.
    pub fn offered_features(&self) -> u64 {
        lock(&self.handle.shared).offered_features()
    }

    /// Serve frontends, one at a time, until [`ServerHandle::shutdown`].
    pub fn run(&self) -> io::Result<()> {
        loop {
            match wait2(self.listener.as_raw_fd(), self.handle.shutdown.as_raw_fd())? {
                Ready::Shutdown => return Ok(()),
                Ready::First => {}
            }
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: do not spin.
                    log::warn!("accept: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue;
                }
            };
            let n = self.handle.counters.accepted.fetch_add(1, Ordering::AcqRel) + 1;
            log::info!("frontend connected (connection {n})");
            let stop = self.serve(stream);
            lock(&self.handle.shared).disconnect();
            self.handle.counters.closed.fetch_add(1, Ordering::AcqRel);
            log::info!("connection {n} closed; device reset, ready for the next frontend");
            if stop {
                return Ok(());
            }
        }
    }

    /// Serve one connection; returns whether a shutdown was asked for.
    fn serve(&self, stream: UnixStream) -> bool {
        let conn_fd = stream.as_raw_fd();
        let mut handler = BackendReqHandler::from_stream(stream, Arc::clone(&self.handle.shared));
        self.ctl.stopping.store(false, Ordering::Release);
        let _ = self.ctl.wake.read();
        std::thread::scope(|s| {
            let worker = std::thread::Builder::new()
                .name("virtnet-queue-0".into())
                .spawn_scoped(s, || self.worker());
            let worker = match worker {
                Ok(w) => Some(w),
                Err(e) => {
                    log::error!("cannot start the queue worker: {e}");
                    None
                }
            };
            let mut shutdown = false;
            while worker.is_some() {
                match wait2(conn_fd, self.handle.shutdown.as_raw_fd()) {
                    Ok(Ready::First) => {}
                    Ok(Ready::Shutdown) => {
                        shutdown = true;
                        break;
                    }
                    Err(e) => {
                        log::error!("poll: {e}");
                        break;
                    }
                }
                match early_vring_enable(conn_fd, &self.handle.shared) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        log::info!("frontend connection lost: {e}");
                        break;
                    }
                }
                match handler.handle_request() {
                    Ok(()) => {}
                    Err(VuError::Disconnected) => {
                        log::info!("frontend disconnected");
                        break;
                    }
                    Err(e @ (VuError::PartialMessage | VuError::SocketBroken(_))) => {
                        log::info!("frontend connection lost: {e}");
                        break;
                    }
                    Err(e) => {
                        log::warn!("closing the connection after a failed request: {e}");
                        break;
                    }
                }
            }
            self.ctl.stopping.store(true, Ordering::Release);
            self.ctl.kick_worker();
            if let Some(w) = worker {
                if w.join().is_err() {
                    log::error!("the queue worker panicked");
                }
            }
            shutdown
        })
    }

    /// The queue-pair worker: wait for events, then one pass under the lock.
    fn worker(&self) {
        let shared = &self.handle.shared;
        let ctl = &self.ctl;
        let poll = self.config.poll;
        let budget = self.config.budget.max(1);
        let mut events = [EpollEvent::default(); 8];
        let mut armed: Option<RawFd> = None;
        let (mut do_tx, mut do_rx) = (true, true);
        let mut kicks = [false; NUM_QUEUES as usize];
        loop {
            if ctl.stopping.load(Ordering::Acquire) {
                break;
            }
            let step = {
                let mut st = lock(shared);
                if kicks.iter().any(|&k| k) {
                    st.drain_kicks(kicks);
                }
                st.process(budget, do_tx, do_rx)
            };
            if step.backend_fd != armed {
                if let Some(fd) = armed.take() {
                    let _ = ctl
                        .epoll
                        .ctl(ControlOperation::Delete, fd, EpollEvent::default());
                }
                if let Some(fd) = step.backend_fd {
                    match ctl.epoll.ctl(
                        ControlOperation::Add,
                        fd,
                        EpollEvent::new(EventSet::IN, TOKEN_BACKEND),
                    ) {
                        Ok(()) => armed = Some(fd),
                        Err(e) => log::warn!("cannot watch the backend fd: {e}"),
                    }
                }
            }
            kicks = [false; NUM_QUEUES as usize];
            if poll {
                (do_tx, do_rx) = (true, true);
                if !(step.tx_more || step.rx_more) {
                    std::hint::spin_loop();
                }
                continue;
            }
            let timeout = if step.tx_more || step.rx_more {
                0
            } else if step.timer {
                1
            } else {
                -1
            };
            let n = match ctl.epoll.wait(timeout, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    log::error!("epoll_wait: {e}");
                    break;
                }
            };
            (do_tx, do_rx) = (step.tx_more || step.timer, step.rx_more || step.timer);
            for e in events.iter().take(n) {
                match e.data() {
                    TOKEN_WAKE => {
                        let _ = ctl.wake.read();
                        (do_tx, do_rx) = (true, true);
                    }
                    TOKEN_BACKEND => do_rx = true,
                    t => {
                        let q = t.wrapping_sub(TOKEN_KICK) as usize;
                        if let Some(k) = kicks.get_mut(q) {
                            *k = true;
                        }
                        // A kick on either queue may unblock the other
                        // (RX buffers for a pending frame, TX for loopback).
                        if q == 0 {
                            do_rx = true;
                        } else {
                            do_tx = true;
                        }
                    }
                }
            }
        }
        if let Some(fd) = armed {
            let _ = ctl
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default());
        }
    }
}

impl<B: HostBackend, const SLOT: usize, const COUNT: usize> Drop for Server<'_, B, SLOT, COUNT> {
    fn drop(&mut self) {
        // Only remove the file if it is still the socket we bound.
        let now = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if now.is_some() && now == self.inode {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `VHOST_USER_SET_VRING_ENABLE`.
const SET_VRING_ENABLE: u32 = 18;
/// Header flags: version 1, reply, need-reply.
const FLAG_VERSION: u32 = 0x1;
const FLAG_REPLY: u32 = 0x4;
const FLAG_NEED_REPLY: u32 = 0x8;

/// QEMU's virtio-net enables or disables its rings (`SET_VRING_ENABLE`)
/// when the device resets, before it has sent `SET_FEATURES`; the vhost-user
/// spec allows that once the backend *offered* `VHOST_USER_F_PROTOCOL_FEATURES`,
/// but rust-vmm's `vhost` 0.18 refuses it until the bit is *acknowledged*
/// and sends no reply, which leaves QEMU waiting for its REPLY_ACK. This
/// one message is therefore taken here when it arrives that early: the
/// ring's enable flag is recorded and the ack sent. Every other message,
/// and this one after `SET_FEATURES`, goes to the `vhost` crate.
///
/// Returns whether a message was consumed.
fn early_vring_enable<B: HostBackend, const SLOT: usize, const COUNT: usize>(
    fd: RawFd,
    shared: &Mutex<DeviceState<'_, B, SLOT, COUNT>>,
) -> io::Result<bool> {
    let mut msg = [0u8; 20];
    let peek = |buf: &mut [u8; 20]| {
        // SAFETY: `buf` is a live, writable 20-byte buffer.
        let n = unsafe {
            libc::recv(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        usize::try_from(n).unwrap_or(0)
    };
    let word = |b: &[u8; 20], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut n = peek(&mut msg);
    if n < 12 || word(&msg, 0) != SET_VRING_ENABLE || word(&msg, 8) != 8 {
        return Ok(false);
    }
    {
        let st = lock(shared);
        if st.acked_features() & crate::device::PROTOCOL_FEATURES_BIT != 0 {
            return Ok(false);
        }
    }
    // The body normally comes with the header; wait briefly if not.
    for _ in 0..100 {
        if n >= 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        n = peek(&mut msg);
    }
    if n < 20 {
        return Ok(false);
    }
    // SAFETY: reads the 20 bytes peeked above into the live buffer.
    let got = unsafe { libc::recv(fd, msg.as_mut_ptr().cast(), msg.len(), libc::MSG_DONTWAIT) };
    if got != 20 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
    }
    let flags = word(&msg, 4);
    let (index, num) = (word(&msg, 12), word(&msg, 16));
    let mut st = lock(shared);
    let r = st.early_vring_enable(index, num);
    log::debug!("SET_VRING_ENABLE {index} {num} before SET_FEATURES: {r:?}");
    let reply_ack = st
        .acked_protocol_features()
        .contains(vhost::vhost_user::VhostUserProtocolFeatures::REPLY_ACK);
    drop(st);
    if flags & FLAG_NEED_REPLY != 0 && reply_ack {
        let mut out = [0u8; 20];
        out[0..4].copy_from_slice(&SET_VRING_ENABLE.to_le_bytes());
        out[4..8].copy_from_slice(&(FLAG_VERSION | FLAG_REPLY).to_le_bytes());
        out[8..12].copy_from_slice(&8u32.to_le_bytes());
        out[12..20].copy_from_slice(&u64::from(r.is_err()).to_le_bytes());
        // SAFETY: sends the 20 live bytes of `out`.
        let sent = unsafe { libc::send(fd, out.as_ptr().cast(), out.len(), libc::MSG_NOSIGNAL) };
        if sent != 20 {
            return Err(io::Error::last_os_error());
        }
    }
    if r.is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad SET_VRING_ENABLE",
        ));
    }
    Ok(true)
}

enum Ready {
    First,
    Shutdown,
}

/// Wait until `fd` is readable (or hung up) or `shutdown` fires.
fn wait2(fd: RawFd, shutdown: RawFd) -> io::Result<Ready> {
    let mut fds = [
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: shutdown,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfds for the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[1].revents != 0 {
            return Ok(Ready::Shutdown);
        }
        if fds[0].revents != 0 {
            return Ok(Ready::First);
        }
    }
}
