//! The thread-per-core runtime, behind one thin module: everything else in `ingest` sees
//! [`CoreRuntime`], [`build`] and [`spawn_core`], so another thread-per-core runtime
//! (glommio, a raw io_uring loop) would replace this file and not the connection code.
//!
//! Driver choice, per core, logged by the caller:
//! 1. io_uring with `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (one thread
//!    submits, completions are processed when that thread asks: the cheapest mode);
//! 2. plain io_uring, on kernels that refuse those flags (before 6.1);
//! 3. epoll (monoio's legacy driver) when io_uring cannot be used at all: `EPERM` from a
//!    seccomp filter (Docker's default profile), `kernel.io_uring_disabled`, `ENOSYS`
//!    under qemu-user. `[runtime] driver = "epoll"` forces it.

use std::io;

use monoio::time::TimeDriver;
use monoio::{FusionRuntime, IoUringDriver, LegacyDriver, RuntimeBuilder};

/// A core's runtime: io_uring or epoll, with timers.
pub type CoreRuntime = FusionRuntime<TimeDriver<IoUringDriver>, TimeDriver<LegacyDriver>>;

/// Submission queue entries per core's ring.
const RING_ENTRIES: u32 = 4096;

/// Which I/O driver a core runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    IoUringDeferTaskrun,
    IoUring,
    Epoll,
}

impl DriverKind {
    /// The label in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::IoUringDeferTaskrun => "io_uring (single issuer, defer taskrun)",
            DriverKind::IoUring => "io_uring",
            DriverKind::Epoll => "epoll",
        }
    }
}

/// Builds the runtime of the calling thread. `force_epoll` skips io_uring. The error of
/// each refused io_uring variant is returned with the result, for the log.
pub fn build(force_epoll: bool) -> io::Result<(CoreRuntime, DriverKind, Vec<io::Error>)> {
    let mut refused = Vec::new();
    if !force_epoll {
        let mut urb = io_uring::IoUring::builder();
        urb.setup_single_issuer().setup_defer_taskrun();
        match RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(RING_ENTRIES)
            .uring_builder(urb)
            .enable_timer()
            .build()
        {
            Ok(rt) => return Ok((rt.into(), DriverKind::IoUringDeferTaskrun, refused)),
            Err(e) => refused.push(e),
        }
        match RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(RING_ENTRIES)
            .enable_timer()
            .build()
        {
            Ok(rt) => return Ok((rt.into(), DriverKind::IoUring, refused)),
            Err(e) => refused.push(e),
        }
    }
    let rt = RuntimeBuilder::<LegacyDriver>::new().enable_timer().build()?;
    Ok((rt.into(), DriverKind::Epoll, refused))
}

/// Pins the calling thread to `cpu` (best effort: a cgroup may not allow it).
pub fn pin(cpu: usize) -> bool {
    monoio::utils::bind_to_cpu_set([cpu]).is_ok()
}

/// The CPUs this process may run on, in order: what `taskset`, systemd's `CPUAffinity=`
/// or a cpuset left it. Core N is pinned to the N-th of them (wrapping around), so
/// `taskset -c 1 capig serve` runs core 0 on CPU 1, not on CPU 0.
pub fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or("");
    let cpus = parse_cpu_list(list);
    if cpus.is_empty() {
        (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
    } else {
        cpus
    }
}

/// Reads a kernel CPU list such as `0-3,8,10-11`; anything unreadable gives an empty list.
pub fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
            (Ok(a), Ok(b)) if a <= b && b - a < 65_536 => cpus.extend(a..=b),
            _ => return Vec::new(),
        }
    }
    cpus
}

/// Starts `cores` threads named `capig-core-N`, each pinned to a CPU (in order, wrapping
/// around the CPUs this process may use), each building its runtime and running `main`.
/// Returns once every core runs, with the driver each one got.
pub fn spawn_cores<F, Fut>(
    cores: usize,
    force_epoll: bool,
    main: F,
) -> io::Result<(Vec<std::thread::JoinHandle<()>>, Vec<DriverKind>)>
where
    F: Fn(usize, DriverKind) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let cpus = allowed_cpus();
    let mut handles = Vec::with_capacity(cores);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, io::Result<DriverKind>)>();
    for core in 0..cores {
        let main = main.clone();
        let cpus = cpus.clone();
        let tx = tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("capig-core-{core}"))
            .spawn(move || {
                let cpu = cpus[core % cpus.len()];
                let pinned = pin(cpu);
                let (mut rt, kind, refused) = match build(force_epoll) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send((core, Err(e)));
                        return;
                    }
                };
                for e in refused {
                    tracing::debug!("core {core}: an io_uring setup was refused: {e}");
                }
                tracing::info!(
                    "core {core}: {} driver{}",
                    kind.as_str(),
                    if pinned { format!(", pinned to CPU {cpu}") } else { String::new() }
                );
                let _ = tx.send((core, Ok(kind)));
                match &mut rt {
                    FusionRuntime::Uring(r) => r.block_on(main(core, kind)),
                    FusionRuntime::Legacy(r) => r.block_on(main(core, kind)),
                }
            })?;
        handles.push(h);
    }
    drop(tx);
    let mut kinds = vec![DriverKind::Epoll; cores];
    for _ in 0..cores {
        match rx.recv() {
            Ok((core, Ok(kind))) => kinds[core] = kind,
            Ok((core, Err(e))) => {
                return Err(io::Error::new(e.kind(), format!("core {core}: cannot build an I/O runtime: {e}")))
            }
            Err(_) => return Err(io::Error::other("a core thread ended while starting")),
        }
    }
    Ok((handles, kinds))
}

#[cfg(test)]
mod tests;
