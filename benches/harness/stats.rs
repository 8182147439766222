//! Small statistics helpers and the counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A global allocator that counts the bytes it hands out (allocations plus
/// growth of reallocations), for "bytes allocated per call".
pub struct CountingAlloc;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

/// Bytes allocated by the whole process so far.
pub fn allocated_bytes() -> u64 {
    ALLOCATED.load(Ordering::Relaxed)
}

// SAFETY: every call forwards to the system allocator unchanged; the counter
// is only a side effect.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            ALLOCATED.fetch_add((new_size - layout.size()) as u64, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

/// The median of some values (0 when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `p` quantile (0..=1) of latencies, in microseconds (nearest rank).
pub fn percentile_us(latencies: &mut [Duration], p: f64) -> f64 {
    if latencies.is_empty() {
        return f64::NAN;
    }
    latencies.sort_unstable();
    let rank = ((latencies.len() as f64) * p).ceil() as usize;
    let i = rank.clamp(1, latencies.len()) - 1;
    latencies[i].as_secs_f64() * 1e6
}

/// Peak resident set size of this process in KiB (`VmHWM`), when known.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// CPU time (nanoseconds, all threads) of process `pid`, or of this process
/// for `None`: the sum of the threads' `schedstat` run times, which the
/// kernel keeps in nanoseconds (`/proc/PID/stat` counts 10 ms ticks). Threads
/// that have exited are not counted; the processes measured here keep theirs.
pub fn cpu_ns(pid: Option<u32>) -> Option<u64> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}/task"),
        None => "/proc/self/task".to_string(),
    };
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir).ok()? {
        let mut path = entry.ok()?.path();
        path.push("schedstat");
        // A thread that ended between the listing and the read adds nothing.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The process whose CPU time counts as the server's (the emulator), set
/// once at start.
static SERVER_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Names the server process for [`CpuMark`].
pub fn set_server_pid(pid: u32) {
    let _ = SERVER_PID.set(pid);
}

/// CPU time of this process and of the server at one moment.
#[derive(Clone, Copy)]
pub struct CpuMark {
    client: Option<u64>,
    server: Option<u64>,
}

/// CPU time spent by the client and the server over a run, in nanoseconds,
/// when it could be read.
#[derive(Clone, Copy)]
pub struct CpuSpent {
    client_ns: Option<u64>,
    server_ns: Option<u64>,
}

/// CPU time per call of a run, in microseconds: the client's (this process)
/// and the server's (the emulator), when they could be read.
#[derive(Clone, Copy, Default)]
pub struct CpuPerCall {
    pub client_us: Option<f64>,
    pub server_us: Option<f64>,
}

fn server_cpu_ns() -> Option<u64> {
    SERVER_PID.get().and_then(|p| cpu_ns(Some(*p)))
}

impl CpuMark {
    /// Now.
    pub fn now() -> Self {
        CpuMark {
            client: cpu_ns(None),
            server: server_cpu_ns(),
        }
    }

    /// The server's CPU time only (for calls made by another process).
    pub fn server_now() -> Self {
        CpuMark {
            client: None,
            server: server_cpu_ns(),
        }
    }

    /// What was spent since this mark.
    pub fn spent(&self) -> CpuSpent {
        let since =
            |then: Option<u64>, now: fn() -> Option<u64>| Some(now()?.saturating_sub(then?));
        CpuSpent {
            client_ns: since(self.client, || cpu_ns(None)),
            server_ns: since(self.server, server_cpu_ns),
        }
    }
}

impl CpuSpent {
    /// Both runs together (a side unknown in either is unknown).
    pub fn plus(self, other: CpuSpent) -> CpuSpent {
        let add = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
        CpuSpent {
            client_ns: add(self.client_ns, other.client_ns),
            server_ns: add(self.server_ns, other.server_ns),
        }
    }

    /// Per call, over `calls` calls.
    pub fn per_call(&self, calls: usize) -> CpuPerCall {
        let per = |ns: Option<u64>| Some(ns? as f64 / 1e3 / (calls > 0).then_some(calls)? as f64);
        CpuPerCall {
            client_us: per(self.client_ns),
            server_us: per(self.server_ns),
        }
    }
}
