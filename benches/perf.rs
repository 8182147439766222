//! The performance harness of issue 8: this SDK side by side with raw
//! reqwest doing the same HTTP requests and with the official Python SDK
//! (PySafeguard), against one standalone emulator. Run it through
//! `scripts/bench [--quick]`, which builds everything, starts the emulator
//! and passes the arguments below.
//!
//! ```text
//! perf --conn DIR/connection.json --out target/bench/report.md
//!      [--quick] [--runs N] [--python VENV/bin/python --py-script scripts/bench-py/bench.py]
//!      [--build-table FILE] [--note TEXT]... [--only 1,2,...] [--emulator-pid PID]
//! perf download-child --conn DIR/connection.json --id BACKUP_ID --mode sdk|raw
//! ```
//!
//! Every figure is the median of `--runs` rounds (default 5) after a
//! warm-up; the ratios are computed round by round (SDK, raw and Python
//! measured in the same round, the SDK and raw in alternating turns) and
//! their median is reported. Workloads 1-4 also report the CPU time each
//! call cost the client process and the emulator (`--emulator-pid`).
//! Workload 9 measures the SDK alone: how soon an A2A credential watch holds
//! a rotated password, with the A2A hub up and after an outage of the hub
//! (`POST /emulator/a2a-hub/outage`).

#[path = "harness/python.rs"]
mod python;
#[path = "harness/raw.rs"]
mod raw;
#[path = "harness/stats.rs"]
mod stats;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use safeguard_emulator::{ConnectionInfo, PASSWORD_ACCOUNT};
use safeguard_sdk::a2a::{A2aContext, CredentialWatch, Current};
use safeguard_sdk::api::core::types;
use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::events::{Event, ListenerState};
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{ExposeSecret, SafeguardClient, SecretString, Service};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use python::Python;
use raw::BoxError;

#[global_allocator]
static GLOBAL: stats::CountingAlloc = stats::CountingAlloc;

type Res<T> = Result<T, BoxError>;

/// Command-line options of the main mode.
struct Args {
    conn: PathBuf,
    out: PathBuf,
    quick: bool,
    runs: usize,
    python: Option<PathBuf>,
    py_script: PathBuf,
    build_table: Option<PathBuf>,
    notes: Vec<String>,
    /// Workload numbers to run (all when empty): for profiling one of them.
    only: Vec<u32>,
    /// The emulator's process, whose CPU time per call is reported.
    emulator_pid: Option<u32>,
}

fn parse_args(argv: &[String]) -> Res<Args> {
    let mut a = Args {
        conn: PathBuf::new(),
        out: PathBuf::from("target/bench/report.md"),
        quick: false,
        runs: 5,
        python: None,
        py_script: PathBuf::from("scripts/bench-py/bench.py"),
        build_table: None,
        notes: Vec::new(),
        only: Vec::new(),
        emulator_pid: None,
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--conn" => a.conn = value()?.into(),
            "--out" => a.out = value()?.into(),
            "--quick" => a.quick = true,
            "--runs" => a.runs = value()?.parse()?,
            "--python" => a.python = Some(value()?.into()),
            "--py-script" => a.py_script = value()?.into(),
            "--build-table" => a.build_table = Some(value()?.into()),
            "--note" => a.notes.push(value()?),
            "--emulator-pid" => a.emulator_pid = Some(value()?.parse()?),
            "--only" => {
                a.only = value()?
                    .split(',')
                    .map(|n| n.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--only takes workload numbers like 1,2: {e}"))?
            }
            // `cargo bench` passes `--bench` to harness-less binaries.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if a.conn.as_os_str().is_empty() {
        return Err("--conn DIR/connection.json is required".into());
    }
    if a.runs < 5 {
        return Err("--runs must be at least 5".into());
    }
    Ok(a)
}

/// Whether a larger value is better (throughput) or a smaller one (time).
#[derive(Clone, Copy, PartialEq)]
enum Better {
    Higher,
    Lower,
}

/// Which target a row is checked against.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    None,
    /// sdk/raw ≤ 1.10 and pysafeguard/sdk ≥ 20.
    RawAndPython,
    /// sdk/raw ≤ 1.10 only.
    Raw,
    /// SDK p99 under 5 ms.
    EventP99,
}

/// One measured figure of one run.
#[derive(Clone, Copy, Default)]
struct Triple {
    sdk: f64,
    raw: Option<f64>,
    py: Option<f64>,
}

/// One row of the table: a figure measured in every run.
struct Metric {
    label: String,
    unit: &'static str,
    better: Better,
    target: Target,
    runs: Vec<Triple>,
    rss: String,
}

impl Metric {
    fn new(label: impl Into<String>, unit: &'static str, better: Better, target: Target) -> Self {
        Metric {
            label: label.into(),
            unit,
            better,
            target,
            runs: Vec::new(),
            rss: String::new(),
        }
    }

    fn sdk(&self) -> f64 {
        stats::median(&self.runs.iter().map(|t| t.sdk).collect::<Vec<_>>())
    }

    fn raw(&self) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().filter_map(|t| t.raw).collect();
        (!v.is_empty()).then(|| stats::median(&v))
    }

    fn py(&self) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().filter_map(|t| t.py).collect();
        (!v.is_empty()).then(|| stats::median(&v))
    }

    /// How many times the cost (time per operation) of `a` is that of `b`.
    fn cost_ratio(&self, a: f64, b: f64) -> f64 {
        match self.better {
            Better::Higher => b / a,
            Better::Lower => a / b,
        }
    }

    /// Median over runs of the SDK's cost relative to raw reqwest.
    fn sdk_raw(&self) -> Option<f64> {
        let v: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|t| t.raw.map(|r| self.cost_ratio(t.sdk, r)))
            .collect();
        (!v.is_empty()).then(|| stats::median(&v))
    }

    /// Median over runs of PySafeguard's cost relative to the SDK.
    fn py_sdk(&self) -> Option<f64> {
        let v: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|t| t.py.map(|p| self.cost_ratio(p, t.sdk)))
            .collect();
        (!v.is_empty()).then(|| stats::median(&v))
    }
}

/// A build-time row from `scripts/bench-build`.
struct BuildRow {
    label: String,
    time: String,
}

/// Everything the workloads share.
struct Ctx {
    conn: ConnectionInfo,
    conn_path: PathBuf,
    ca_pem: Vec<u8>,
    quick: bool,
    runs: usize,
    sdk: SafeguardClient,
    token: String,
    raw: reqwest::Client,
    admin: reqwest::Client,
}

/// The Python side and the notes the report ends with: the mutable state
/// the workloads share.
struct Side {
    proc: Option<Python>,
    exe: Option<PathBuf>,
    script: PathBuf,
    notes: Vec<String>,
}

impl Side {
    /// Runs a Python command; on failure, notes it and drops the Python column.
    async fn call(&mut self, command: Value) -> Option<Value> {
        let py = self.proc.as_mut()?;
        let cpu = stats::CpuMark::server_now();
        match py.call(command.clone()).await {
            Ok(mut v) => {
                // The emulator's CPU per call while Python made its calls.
                if let Some(count) = v["count"].as_u64() {
                    if let Some(us) = cpu.spent().per_call(count as usize).server_us {
                        v["server_cpu_us"] = json!(us);
                    }
                }
                Some(v)
            }
            Err(e) => {
                self.notes.push(format!(
                    "pysafeguard failed on {}: {e}; its column is empty from there on",
                    command["op"]
                ));
                self.proc = None;
                None
            }
        }
    }
}

impl Ctx {
    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.conn.spp.host)
    }

    fn pick(&self, quick: usize, full: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    fn sdk_builder(&self) -> Res<safeguard_sdk::SafeguardClientBuilder> {
        let admin = &self.conn.spp.admin;
        Ok(SafeguardClient::builder(self.conn.spp.host.clone())
            .ca_pem(&self.ca_pem)?
            .auth(PkceAuth::new(
                "local",
                admin.user.clone(),
                admin.password.clone(),
            )))
    }

    async fn admin_post(&self, path: &str, body: Value) -> Res<Value> {
        let r = self.admin.post(self.url(path)).json(&body).send().await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {v}").into());
        }
        Ok(v)
    }

    async fn admin_state(&self) -> Res<Value> {
        Ok(self
            .admin
            .get(self.url("/emulator/state"))
            .send()
            .await?
            .json()
            .await?)
    }
}

/// Requests/s, p50 and p99 of a run of timed calls, the CPU time each call
/// cost the client and the server, and the bytes it allocated.
struct RunStats {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    cpu: stats::CpuPerCall,
    allocated_per_call: f64,
}

/// What one run of timed calls measured, before it is summarised. Runs of
/// one side merge, so that the SDK and raw reqwest can take turns in short
/// slices (see [`paired`]).
struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
    cpu: stats::CpuSpent,
    allocated: u64,
}

impl Sample {
    /// Starts measuring a run.
    fn start() -> (Instant, stats::CpuMark, u64) {
        (
            Instant::now(),
            stats::CpuMark::now(),
            stats::allocated_bytes(),
        )
    }

    /// The run begun at `start` and timed as `latencies`.
    fn finish(latencies: Vec<Duration>, start: (Instant, stats::CpuMark, u64)) -> Self {
        let (at, cpu, allocated) = start;
        Sample {
            elapsed: at.elapsed(),
            cpu: cpu.spent(),
            allocated: stats::allocated_bytes() - allocated,
            latencies,
        }
    }

    /// `acc` and `next` as one run.
    fn merged(acc: Option<Sample>, next: Sample) -> Sample {
        let Some(mut acc) = acc else {
            return next;
        };
        acc.latencies.extend(next.latencies);
        acc.elapsed += next.elapsed;
        acc.cpu = acc.cpu.plus(next.cpu);
        acc.allocated += next.allocated;
        acc
    }

    fn stats(mut self) -> RunStats {
        let calls = self.latencies.len();
        RunStats {
            per_sec: calls as f64 / self.elapsed.as_secs_f64(),
            p50_us: stats::percentile_us(&mut self.latencies, 0.50),
            p99_us: stats::percentile_us(&mut self.latencies, 0.99),
            cpu: self.cpu.per_call(calls),
            allocated_per_call: self.allocated as f64 / calls.max(1) as f64,
        }
    }
}

fn py_stats(v: &Option<Value>) -> Option<RunStats> {
    let v = v.as_ref()?;
    Some(RunStats {
        per_sec: v["per_sec"].as_f64()?,
        p50_us: v["p50_us"].as_f64()?,
        p99_us: v["p99_us"].as_f64()?,
        cpu: stats::CpuPerCall {
            client_us: v["cpu_us"].as_f64(),
            server_us: v["server_cpu_us"].as_f64(),
        },
        allocated_per_call: f64::NAN,
    })
}

/// Times `n` sequential calls of `call`.
async fn sequential<F, Fut>(n: usize, mut call: F) -> Res<Sample>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<()>>,
{
    let mut lat = Vec::with_capacity(n);
    let start = Sample::start();
    for _ in 0..n {
        let t = Instant::now();
        call().await?;
        lat.push(t.elapsed());
    }
    Ok(Sample::finish(lat, start))
}

/// The two CPU rows of a workload: what one call cost the client process
/// and the emulator.
fn cpu_metrics(label: &str) -> Vec<Metric> {
    vec![
        Metric::new(
            format!("{label}: client CPU per call"),
            "µs",
            Better::Lower,
            Target::None,
        ),
        Metric::new(
            format!("{label}: emulator CPU per call"),
            "µs",
            Better::Lower,
            Target::None,
        ),
    ]
}

/// Pushes one round's CPU figures into the two metrics of [`cpu_metrics`]
/// (a run whose client CPU could not be read is left out).
fn push_cpu(m: &mut [Metric], sdk: &RunStats, raw: Option<&RunStats>, py: Option<&RunStats>) {
    let rows: [fn(&stats::CpuPerCall) -> Option<f64>; 2] = [|c| c.client_us, |c| c.server_us];
    for (metric, row) in m.iter_mut().zip(rows) {
        if let Some(s) = row(&sdk.cpu) {
            metric.runs.push(Triple {
                sdk: s,
                raw: raw.and_then(|r| row(&r.cpu)),
                py: py.and_then(|p| row(&p.cpu)),
            });
        }
    }
}

/// Pushes throughput, p50 and p99 of one round into three metrics.
fn push3(m: &mut [Metric], sdk: &RunStats, raw: Option<&RunStats>, py: Option<&RunStats>) {
    m[0].runs.push(Triple {
        sdk: sdk.per_sec,
        raw: raw.map(|r| r.per_sec),
        py: py.map(|r| r.per_sec),
    });
    m[1].runs.push(Triple {
        sdk: sdk.p50_us,
        raw: raw.map(|r| r.p50_us),
        py: py.map(|r| r.p50_us),
    });
    m[2].runs.push(Triple {
        sdk: sdk.p99_us,
        raw: raw.map(|r| r.p99_us),
        py: py.map(|r| r.p99_us),
    });
}

fn three(label: &str, target: Target) -> Vec<Metric> {
    vec![
        Metric::new(
            format!("{label}: throughput"),
            "req/s",
            Better::Higher,
            target,
        ),
        Metric::new(
            format!("{label}: p50 latency"),
            "µs",
            Better::Lower,
            Target::None,
        ),
        Metric::new(
            format!("{label}: p99 latency"),
            "µs",
            Better::Lower,
            Target::None,
        ),
    ]
}

/// How many turns each side takes in one round of [`paired`].
const SLICES: usize = 6;

/// The share of `n` calls that one slice of [`paired`] makes.
fn slice_of(n: usize) -> usize {
    n.div_ceil(SLICES).max(1)
}

/// Measures the SDK and raw reqwest in one round: each side takes
/// [`SLICES`] turns (made by `sdk` and `raw`, a [`slice_of`] the round's
/// calls each), alternating which goes first from turn to turn and round to
/// round, so that both see the same state of this noisy machine (the other
/// side's closing work, the Python side's round, whatever else runs) and
/// neither always inherits what ran before it.
async fn paired<S, R, FS, FR>(round: usize, mut sdk: S, mut raw: R) -> Res<(RunStats, RunStats)>
where
    S: FnMut() -> FS,
    R: FnMut() -> FR,
    FS: std::future::Future<Output = Res<Sample>>,
    FR: std::future::Future<Output = Res<Sample>>,
{
    let (mut s, mut r) = (None, None);
    for turn in 0..SLICES {
        if (round + turn).is_multiple_of(2) {
            s = Some(Sample::merged(s, sdk().await?));
            r = Some(Sample::merged(r, raw().await?));
        } else {
            r = Some(Sample::merged(r, raw().await?));
            s = Some(Sample::merged(s, sdk().await?));
        }
    }
    match (s, r) {
        (Some(s), Some(r)) => Ok((s.stats(), r.stats())),
        _ => Err("a round needs at least one slice".into()),
    }
}

// ---- workload 1: GET Me, typed, sequential ----

async fn sdk_me(client: &SafeguardClient) -> Res<()> {
    let me: types::Me = client.core().me_get_me().send().await?.into_inner();
    std::hint::black_box(me);
    Ok(())
}

async fn raw_me(ctx: &Ctx) -> Res<()> {
    let me: types::Me =
        raw::get_json(&ctx.raw, &ctx.url("/service/core/v4/Me"), &ctx.token).await?;
    std::hint::black_box(me);
    Ok(())
}

async fn w1_me_sequential(ctx: &Ctx, py: &mut Side) -> Res<Vec<Metric>> {
    let n = ctx.pick(200, 3000);
    let py_n = ctx.pick(30, 300);
    let label = "1. GET core/v4/Me, typed, sequential";
    let mut m = three(label, Target::RawAndPython);
    m.extend(cpu_metrics(label));
    // Warm-up.
    sequential(n / 4, move || sdk_me(&ctx.sdk)).await?;
    sequential(n / 4, move || raw_me(ctx)).await?;
    py.call(json!({"op": "me_seq", "n": py_n / 4})).await;
    for round in 0..ctx.runs {
        let (sdk, raw) = paired(
            round,
            || sequential(slice_of(n), move || sdk_me(&ctx.sdk)),
            || sequential(slice_of(n), move || raw_me(ctx)),
        )
        .await?;
        let py = py_stats(&py.call(json!({"op": "me_seq", "n": py_n})).await);
        push3(&mut m, &sdk, Some(&raw), py.as_ref());
        push_cpu(&mut m[3..], &sdk, Some(&raw), py.as_ref());
    }
    Ok(m)
}

// ---- workload 2: the same with 64 concurrent tasks ----

const TASKS: usize = 64;

async fn concurrent<F, Fut>(per_task: usize, call: F) -> Res<Sample>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Res<()>> + Send,
{
    let start = Sample::start();
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let t = Instant::now();
                    call().await?;
                    lat.push(t.elapsed());
                }
                Ok::<_, BoxError>(lat)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(TASKS * per_task);
    for h in handles {
        all.extend(h.await??);
    }
    Ok(Sample::finish(all, start))
}

async fn w2_me_concurrent(ctx: &Ctx, py: &mut Side) -> Res<Vec<Metric>> {
    // ~1 s per side and round: shorter runs are mostly this machine's noise.
    let per_task = ctx.pick(10, 300);
    let py_per_task = ctx.pick(1, 3);
    let label = "2. GET core/v4/Me, typed, 64 concurrent tasks";
    let mut m = three(label, Target::RawAndPython);
    m.extend(cpu_metrics(label));
    let sdk_call = {
        let client = ctx.sdk.clone();
        move || {
            let client = client.clone();
            async move { sdk_me(&client).await }
        }
    };
    let raw_call = {
        let (http, url, token) = (
            ctx.raw.clone(),
            ctx.url("/service/core/v4/Me"),
            ctx.token.clone(),
        );
        move || {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            async move {
                let me: types::Me = raw::get_json(&http, &url, &token).await?;
                std::hint::black_box(me);
                Ok(())
            }
        }
    };
    concurrent(per_task.div_ceil(2), sdk_call.clone()).await?;
    concurrent(per_task.div_ceil(2), raw_call.clone()).await?;
    py.call(json!({"op": "me_conc", "tasks": TASKS, "per_task": py_per_task}))
        .await;
    for round in 0..ctx.runs {
        let (sdk, raw) = paired(
            round,
            || concurrent(slice_of(per_task), sdk_call.clone()),
            || concurrent(slice_of(per_task), raw_call.clone()),
        )
        .await?;
        let py = py
            .call(json!({"op": "me_conc", "tasks": TASKS, "per_task": py_per_task}))
            .await;
        let py = py_stats(&py);
        push3(&mut m, &sdk, Some(&raw), py.as_ref());
        push_cpu(&mut m[3..], &sdk, Some(&raw), py.as_ref());
    }
    Ok(m)
}

// ---- workload 3: GET Users, 1,000 users, typed ----

const USERS: usize = 1000;

async fn w3_users(ctx: &Ctx, py: &mut Side) -> Res<Vec<Metric>> {
    let have = ctx.admin_state().await?["users"].as_u64().unwrap_or(0) as usize;
    if have < USERS {
        ctx.admin_post("/emulator/users/seed", json!({"count": USERS - have}))
            .await?;
    }
    let n = ctx.pick(4, 100);
    let py_n = ctx.pick(2, 30);
    let label = "3. GET core/v4/Users (1,000 users), typed";
    let mut rate = Metric::new(
        format!("{label}: throughput"),
        "req/s",
        Better::Higher,
        Target::RawAndPython,
    );
    let mut alloc = Metric::new(
        format!("{label}: bytes allocated per call"),
        "B",
        Better::Lower,
        Target::None,
    );
    let mut cpu = cpu_metrics(label);
    let raw_url = ctx.url(&format!("/service/core/v4/Users?limit={USERS}"));
    let raw_url = raw_url.as_str();
    let sdk_call = move || async move {
        let users: Vec<types::User> = ctx
            .sdk
            .core()
            .users_get_users()
            .limit(USERS as i32)
            .send()
            .await?
            .into_inner();
        if users.len() != USERS {
            return Err(format!("expected {USERS} users, got {}", users.len()).into());
        }
        std::hint::black_box(users);
        Ok(())
    };
    let raw_call = move || async move {
        let users: Vec<types::User> = raw::get_json(&ctx.raw, raw_url, &ctx.token).await?;
        if users.len() != USERS {
            return Err(format!("expected {USERS} users, got {}", users.len()).into());
        }
        std::hint::black_box(users);
        Ok(())
    };
    sequential(n / 4, sdk_call).await?;
    sequential(n / 4, raw_call).await?;
    py.call(json!({"op": "users", "n": py_n / 4 + 1, "limit": USERS}))
        .await;
    for round in 0..ctx.runs {
        let (sdk, raw) = paired(
            round,
            || sequential(slice_of(n), sdk_call),
            || sequential(slice_of(n), raw_call),
        )
        .await?;
        let py = py
            .call(json!({"op": "users", "n": py_n, "limit": USERS}))
            .await;
        if let Some(items) = py.as_ref().and_then(|v| v["items"].as_u64()) {
            if items as usize != USERS {
                return Err(format!("pysafeguard got {items} users, expected {USERS}").into());
            }
        }
        let py = py_stats(&py);
        rate.runs.push(Triple {
            sdk: sdk.per_sec,
            raw: Some(raw.per_sec),
            py: py.as_ref().map(|p| p.per_sec),
        });
        alloc.runs.push(Triple {
            sdk: sdk.allocated_per_call,
            raw: Some(raw.allocated_per_call),
            py: None,
        });
        push_cpu(&mut cpu, &sdk, Some(&raw), py.as_ref());
    }
    let mut out = vec![rate, alloc];
    out.extend(cpu);
    Ok(out)
}

// ---- workload 4: A2A password retrieval ----

async fn w4_a2a(ctx: &Ctx, py: &mut Side) -> Res<Vec<Metric>> {
    let spp = ctx.conn.spp.clone();
    let key = spp.a2a.password_api_key.clone();
    let cert = std::fs::read(&spp.client_cert.cert)?;
    let pkey = std::fs::read(&spp.client_cert.key)?;
    let tls = TlsOptions::default().with_ca_pem(&ctx.ca_pem)?;
    let sdk_ctx = |max_idle: usize| {
        A2aContext::builder(spp.host.clone())
            .pem_files(&spp.client_cert.cert, &spp.client_cert.key)
            .tls(tls.clone())
            .max_idle_connections(max_idle)
            .build()
    };
    let sdk_reuse = sdk_ctx(8)?;
    let sdk_new = sdk_ctx(0)?;
    let raw_reuse = raw::client(&ctx.ca_pem, Some((&cert, &pkey)), usize::MAX)?;
    let raw_new = raw::client(&ctx.ca_pem, Some((&cert, &pkey)), 0)?;
    let host = spp.host.as_str();
    let key = key.as_str();
    let mut out = Vec::new();
    for (label, sdk, raw_http, py_op, n, py_n) in [
        (
            "4a. A2A password retrieval, reused connection",
            &sdk_reuse,
            &raw_reuse,
            "a2a_reuse",
            ctx.pick(50, 1000),
            ctx.pick(20, 300),
        ),
        (
            "4b. A2A password retrieval, new connection per call",
            &sdk_new,
            &raw_new,
            "a2a_new",
            ctx.pick(10, 200),
            ctx.pick(5, 60),
        ),
    ] {
        let mut m = Metric::new(
            format!("{label}: throughput"),
            "req/s",
            Better::Higher,
            Target::Raw,
        );
        let mut cpu = cpu_metrics(label);
        let sdk_call = move || async move {
            let pw = sdk.retrieve_password(key).await?;
            std::hint::black_box(pw.expose_secret().len());
            Ok(())
        };
        let raw_call = move || async move {
            std::hint::black_box(raw::a2a_password(raw_http, host, key).await?);
            Ok(())
        };
        sequential(n / 4, sdk_call).await?;
        sequential(n / 4, raw_call).await?;
        py.call(json!({"op": py_op, "n": py_n / 4 + 1})).await;
        for round in 0..ctx.runs {
            let (sdk, raw) = paired(
                round,
                || sequential(slice_of(n), sdk_call),
                || sequential(slice_of(n), raw_call),
            )
            .await?;
            let py = py_stats(&py.call(json!({"op": py_op, "n": py_n})).await);
            m.runs.push(Triple {
                sdk: sdk.per_sec,
                raw: Some(raw.per_sec),
                py: py.as_ref().map(|p| p.per_sec),
            });
            push_cpu(&mut cpu, &sdk, Some(&raw), py.as_ref());
        }
        out.push(m);
        out.extend(cpu);
    }
    Ok(out)
}

// ---- workload 5: PKCE sign-in ----

async fn w5_login(ctx: &Ctx, py: &mut Side) -> Res<Vec<Metric>> {
    let n = ctx.pick(3, 20);
    let py_n = ctx.pick(2, 10);
    let mut m = Metric::new(
        "5. sign-in (PKCE) end to end, new client each",
        "ms",
        Better::Lower,
        Target::None,
    );
    let admin = &ctx.conn.spp.admin;
    let host = ctx.conn.spp.host.as_str();
    let sdk_call = move || async move {
        let client = ctx.sdk_builder()?.build()?;
        client.login().await?;
        Ok(())
    };
    let raw_call = move || async move {
        let http = raw::client(&ctx.ca_pem, None, usize::MAX)?;
        std::hint::black_box(raw::pkce_login(&http, host, &admin.user, &admin.password).await?);
        Ok(())
    };
    sequential(2, sdk_call).await?;
    sequential(2, raw_call).await?;
    py.call(json!({"op": "login", "n": 1})).await;
    for _ in 0..ctx.runs {
        let sdk = sequential(n, sdk_call).await?.stats();
        let raw = sequential(n, raw_call).await?.stats();
        let py = py.call(json!({"op": "login", "n": py_n})).await;
        m.runs.push(Triple {
            sdk: 1e3 / sdk.per_sec,
            raw: Some(1e3 / raw.per_sec),
            py: py_stats(&py).map(|p| 1e3 / p.per_sec),
        });
    }
    Ok(vec![m])
}

// ---- workload 6: event delivery ----

const EVENT: &str = "PerfBenchEvent";

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

/// Emits `count` events at 1,000/s through `POST /emulator/events`, each
/// carrying the wall-clock time just before its request is sent.
async fn emit_events(ctx: &Ctx, count: usize) -> Res<Duration> {
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let url = ctx.url("/emulator/events");
    let start = Instant::now();
    for i in 0..count {
        tick.tick().await;
        let body = json!({"name": EVENT, "data": {"Seq": i, "SentNanos": unix_nanos()}});
        let r = ctx.admin.post(&url).json(&body).send().await?;
        if !r.status().is_success() {
            return Err(format!("emit: {}", r.status()).into());
        }
        r.bytes().await?;
    }
    Ok(start.elapsed())
}

async fn websockets(ctx: &Ctx) -> Res<u64> {
    Ok(ctx.admin_state().await?["websockets"].as_u64().unwrap_or(0))
}

async fn wait_websockets(ctx: &Ctx, pred: impl Fn(u64) -> bool) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pred(websockets(ctx).await?) {
        if Instant::now() > deadline {
            return Err("the event hub did not see the expected websockets".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn w6_events(ctx: &Ctx, py: &mut Side) -> Res<Vec<Metric>> {
    let count = ctx.pick(100, 3000);
    let label = "6. event delivery, emulator emit → handler at 1,000 events/s";
    let mut p50 = Metric::new(format!("{label}: p50"), "µs", Better::Lower, Target::None);
    let mut p99 = Metric::new(
        format!("{label}: p99"),
        "µs",
        Better::Lower,
        Target::EventP99,
    );
    let baseline = websockets(ctx).await?;

    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let listener = ctx.sdk.event_listener();
    {
        let latencies = latencies.clone();
        listener.on(EVENT, move |e: &Event| {
            let now = unix_nanos();
            if let Some(sent) = e.body["SentNanos"].as_u64() {
                latencies
                    .lock()
                    .unwrap()
                    .push(Duration::from_nanos(now.saturating_sub(sent)));
            }
        });
    }
    listener.start().await?;
    if !listener
        .wait_for_state(ListenerState::Connected, Duration::from_secs(15))
        .await
    {
        return Err("the SDK event listener did not connect".into());
    }
    wait_websockets(ctx, |n| n > baseline).await?;
    let mut sdk_runs = Vec::new();
    for round in 0..=ctx.runs {
        latencies.lock().unwrap().clear();
        let n = if round == 0 { count / 2 } else { count };
        emit_events(ctx, n).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while latencies.lock().unwrap().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
        if lat.len() < n {
            py.notes.push(format!(
                "SDK events: {} of {n} delivered in a run",
                lat.len()
            ));
        }
        if round > 0 {
            sdk_runs.push((
                stats::percentile_us(&mut lat, 0.5),
                stats::percentile_us(&mut lat, 0.99),
            ));
        }
    }
    listener.stop().await;
    wait_websockets(ctx, |n| n <= baseline).await?;

    let mut py_runs = Vec::new();
    if py
        .call(json!({"op": "events_start", "name": EVENT}))
        .await
        .is_some()
    {
        wait_websockets(ctx, |n| n > baseline).await?;
        for round in 0..=ctx.runs {
            py.call(json!({"op": "events_reset"})).await;
            let n = if round == 0 { count / 2 } else { count };
            emit_events(ctx, n).await?;
            let last = round == ctx.runs;
            let v = py
                .call(json!({"op": "events_stop", "expect": n, "stop": last}))
                .await;
            if round > 0 {
                py_runs.push(v.and_then(|v| Some((v["p50_us"].as_f64()?, v["p99_us"].as_f64()?))));
            }
        }
    }
    for (i, (s50, s99)) in sdk_runs.into_iter().enumerate() {
        let py = py_runs.get(i).copied().flatten();
        p50.runs.push(Triple {
            sdk: s50,
            raw: None,
            py: py.map(|p| p.0),
        });
        p99.runs.push(Triple {
            sdk: s99,
            raw: None,
            py: py.map(|p| p.1),
        });
    }
    Ok(vec![p50, p99])
}

// ---- workload 7: streamed download ----

/// What a download child reports.
struct DownloadRun {
    mb_per_s: f64,
    peak_rss_mib: f64,
}

fn parse_download(stdout: &[u8], expect: u64) -> Res<DownloadRun> {
    let v: Value = serde_json::from_slice(stdout)?;
    let bytes = v["bytes"].as_u64().ok_or("no bytes")?;
    if bytes != expect {
        return Err(format!("downloaded {bytes} bytes, expected {expect}").into());
    }
    Ok(DownloadRun {
        mb_per_s: bytes as f64 / 1e6 / v["seconds"].as_f64().ok_or("no seconds")?,
        peak_rss_mib: v["peak_rss_kib"].as_f64().ok_or("no peak_rss_kib")? / 1024.0,
    })
}

async fn download_child(ctx: &Ctx, id: &str, mode: &str, size: u64) -> Res<DownloadRun> {
    let exe = std::env::current_exe()?;
    let out = tokio::process::Command::new(exe)
        .args(["download-child", "--id", id, "--mode", mode, "--conn"])
        .arg(&ctx.conn_path)
        .stderr(Stdio::inherit())
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!("download child ({mode}) failed: {}", out.status).into());
    }
    parse_download(&out.stdout, size)
}

async fn py_download(ctx: &Ctx, py: &mut Side, id: &str, size: u64) -> Option<DownloadRun> {
    let python = py.exe.clone()?;
    py.proc.as_ref()?;
    let result = async {
        let out = python::command(&python)
            .arg(&py.script)
            .args(["download"])
            .arg(&ctx.conn_path)
            .arg(id)
            .stderr(Stdio::inherit())
            .output()
            .await?;
        if !out.status.success() {
            return Err::<_, BoxError>(format!("bench.py download failed: {}", out.status).into());
        }
        parse_download(&out.stdout, size)
    }
    .await;
    match result {
        Ok(r) => Some(r),
        Err(e) => {
            py.notes.push(format!("pysafeguard download: {e}"));
            None
        }
    }
}

async fn w7_download(ctx: &Ctx, py: &mut Side) -> Res<Vec<Metric>> {
    let size: u64 = if ctx.quick { 16 << 20 } else { 1 << 30 };
    let warm_size: u64 = 16 << 20;
    let big = ctx
        .admin_post("/emulator/backups", json!({"size": size}))
        .await?["id"]
        .as_str()
        .ok_or("no backup id")?
        .to_owned();
    let warm = ctx
        .admin_post("/emulator/backups", json!({"size": warm_size}))
        .await?["id"]
        .as_str()
        .ok_or("no backup id")?
        .to_owned();
    let label = if ctx.quick {
        "7. streamed download (16 MiB in --quick)"
    } else {
        "7. streamed download of 1 GiB"
    };
    let mut rate = Metric::new(
        format!("{label}: throughput"),
        "MB/s",
        Better::Higher,
        Target::None,
    );
    let mut rss = Metric::new(
        format!("{label}: peak RSS of the client process"),
        "MiB",
        Better::Lower,
        Target::None,
    );
    download_child(ctx, &warm, "sdk", warm_size).await?;
    download_child(ctx, &warm, "raw", warm_size).await?;
    py_download(ctx, py, &warm, warm_size).await;
    for _ in 0..ctx.runs {
        let sdk = download_child(ctx, &big, "sdk", size).await?;
        let raw = download_child(ctx, &big, "raw", size).await?;
        let py = py_download(ctx, py, &big, size).await;
        rate.runs.push(Triple {
            sdk: sdk.mb_per_s,
            raw: Some(raw.mb_per_s),
            py: py.as_ref().map(|p| p.mb_per_s),
        });
        rss.runs.push(Triple {
            sdk: sdk.peak_rss_mib,
            raw: Some(raw.peak_rss_mib),
            py: py.as_ref().map(|p| p.peak_rss_mib),
        });
    }
    let show = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.1}"));
    rate.rss = format!(
        "sdk {} / raw {} / py {} MiB",
        show(Some(rss.sdk())),
        show(rss.raw()),
        show(rss.py())
    );
    Ok(vec![rate, rss])
}

/// The download child: signs in, streams the backup to /dev/null, prints
/// bytes, seconds and its own peak RSS as JSON.
async fn child_main(argv: &[String]) -> Res<()> {
    let (mut conn, mut id, mut mode) = (None, None, None);
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--conn" => conn = it.next().cloned(),
            "--id" => id = it.next().cloned(),
            "--mode" => mode = it.next().cloned(),
            _ => {}
        }
    }
    let (conn, id, mode) = (
        conn.ok_or("--conn")?,
        id.ok_or("--id")?,
        mode.ok_or("--mode")?,
    );
    let info: ConnectionInfo = serde_json::from_slice(&std::fs::read(&conn)?)?;
    let ca = std::fs::read(&info.spp.ca)?;
    let path = format!("Backups/{id}/Download");
    let (bytes, seconds) = match mode.as_str() {
        "sdk" => {
            let client = SafeguardClient::builder(info.spp.host.clone())
                .ca_pem(&ca)?
                .auth(PkceAuth::new(
                    "local",
                    info.spp.admin.user.clone(),
                    info.spp.admin.password.clone(),
                ))
                .build()?;
            client.login().await?;
            let start = Instant::now();
            let n = client
                .download(Service::Appliance, &path, "/dev/null", None)
                .await?;
            (n, start.elapsed())
        }
        "raw" => {
            let http = raw::client(&ca, None, usize::MAX)?;
            let token = raw::pkce_login(
                &http,
                &info.spp.host,
                &info.spp.admin.user,
                &info.spp.admin.password,
            )
            .await?;
            let start = Instant::now();
            let response = http
                .get(format!(
                    "https://{}/service/appliance/v4/{path}",
                    info.spp.host
                ))
                .header("Accept", "application/octet-stream")
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?;
            // What a careful user writes: chunks gathered into 1 MiB writes
            // (each tokio `File` write is a trip to the blocking pool).
            let mut file = tokio::io::BufWriter::with_capacity(
                1 << 20,
                tokio::fs::File::create("/dev/null").await?,
            );
            let mut body = response.bytes_stream();
            let mut n = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                file.write_all(&chunk).await?;
                n += chunk.len() as u64;
            }
            file.flush().await?;
            (n, start.elapsed())
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    println!(
        "{}",
        json!({"bytes": bytes, "seconds": seconds.as_secs_f64(), "peak_rss_kib": stats::peak_rss_kib()})
    );
    Ok(())
}

// ---- workload 9: A2A credential watch ----

type HeldPassword = tokio::sync::watch::Receiver<Option<Current<SecretString>>>;

/// The id of the emulator's seeded password account (the account the A2A
/// password key is registered for).
async fn password_account_id(ctx: &Ctx) -> Res<i64> {
    let filter = format!("Name eq '{PASSWORD_ACCOUNT}'");
    let accounts: Value = ctx
        .sdk
        .get(Service::Core, "AssetAccounts")
        .query(&[("filter", filter.as_str())])?
        .send_json()
        .await?;
    accounts[0]["Id"]
        .as_i64()
        .ok_or_else(|| format!("no account {PASSWORD_ACCOUNT}: {accounts}").into())
}

/// Sets the account's password through core, as an administrator (the
/// emulator publishes `AssetAccountPasswordUpdated` to the A2A hub).
async fn rotate_password(ctx: &Ctx, account: i64, password: &str) -> Res<()> {
    ctx.sdk
        .put(Service::Core, &format!("AssetAccounts/{account}/Password"))
        .json(password)
        .send()
        .await?;
    Ok(())
}

fn holds(rx: &HeldPassword, expected: &str) -> bool {
    rx.borrow()
        .as_ref()
        .is_some_and(|c| c.value.expose_secret() == expected)
}

/// Waits, on the watch's change notifications, until it holds `expected`.
async fn until_held(rx: &mut HeldPassword, expected: &str, within: Duration) -> Res<()> {
    let wait = async {
        loop {
            let held = rx
                .borrow_and_update()
                .as_ref()
                .is_some_and(|c| c.value.expose_secret() == expected);
            if held {
                return Ok::<_, BoxError>(());
            }
            rx.changed().await?;
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .map_err(|_| format!("the watch did not hold the new password within {within:?}"))?
}

async fn watch_connected(watch: &CredentialWatch) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while watch.listener_state() != ListenerState::Connected {
        if Instant::now() > deadline {
            return Err("the watch's A2A hub listener did not connect".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Seconds from `from` to `to`, negative when `to` came first.
fn signed_secs(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64(),
        None => -from.duration_since(to).as_secs_f64(),
    }
}

async fn w9_a2a_watch(ctx: &Ctx, py: &mut Side) -> Res<Vec<Metric>> {
    let spp = &ctx.conn.spp;
    let a2a = A2aContext::builder(spp.host.clone())
        .pem_files(&spp.client_cert.cert, &spp.client_cert.key)
        .tls(TlsOptions::default().with_ca_pem(&ctx.ca_pem)?)
        .build()?;
    // Only the hub's events and connections make it pull here: the safety
    // interval is out of the way.
    let watch = a2a
        .credential_watch()
        .safety_interval(Duration::from_secs(3600));
    let password = watch.password(spp.a2a.password_api_key.as_str());
    watch.start().await?;
    watch_connected(&watch).await?;
    let account = password_account_id(ctx).await?;
    let mut rx = password.subscribe();
    let mut seq = 0u32;
    let mut next_password = move || {
        seq += 1;
        format!("bench-watch-{seq:06}")
    };

    // (a) Hub up: from the admin's PUT returning to the watch holding the
    // value (event → the watch pulls over A2A → its channel changes).
    let n = ctx.pick(10, 200);
    let label =
        "9a. A2A watch, hub up: rotation (admin PUT returned) → watcher holds the new value";
    let mut p50 = Metric::new(format!("{label}: p50"), "ms", Better::Lower, Target::None);
    let mut p99 = Metric::new(format!("{label}: p99"), "ms", Better::Lower, Target::None);
    let mut early = 0usize;
    for round in 0..=ctx.runs {
        let count = if round == 0 { n / 4 + 1 } else { n };
        let mut lat = Vec::with_capacity(count);
        for _ in 0..count {
            let pw = next_password();
            rx.borrow_and_update();
            rotate_password(ctx, account, &pw).await?;
            let returned = Instant::now();
            if holds(&rx, &pw) {
                early += 1;
            }
            until_held(&mut rx, &pw, Duration::from_secs(15)).await?;
            lat.push(returned.elapsed());
        }
        if round > 0 {
            p50.runs.push(Triple {
                sdk: stats::percentile_us(&mut lat, 0.50) / 1e3,
                raw: None,
                py: None,
            });
            p99.runs.push(Triple {
                sdk: stats::percentile_us(&mut lat, 0.99) / 1e3,
                raw: None,
                py: None,
            });
        }
    }
    if early > 0 {
        py.notes.push(format!(
            "9a: in {early} rotations the watch held the new value before the admin's PUT returned (counted as ~0 ms)"
        ));
    }

    // (b) A hub outage with a rotation during it: from the outage's end to
    // the watch holding the value (the listener's reconnect, then its pull).
    let outage = Duration::from_secs(if ctx.quick { 1 } else { 10 });
    let outages = ctx.pick(1, 3);
    let listener = watch.listener().ok_or("the watch has no listener")?;
    let connected_at = Arc::new(Mutex::new(None::<Instant>));
    {
        let connected_at = connected_at.clone();
        listener.on_state_change(move |change| {
            if change.state == ListenerState::Connected {
                *connected_at.lock().unwrap() = Some(Instant::now());
            }
        });
    }
    let label = format!(
        "9b. A2A watch: convergence after a {} s A2A hub outage with a rotation during it, from the outage's end ({} {})",
        outage.as_secs(),
        if outages == 1 { "one" } else { "median of" },
        if outages == 1 { "outage".to_string() } else { format!("{outages} outages") },
    );
    let mut converge = Metric::new(label, "s", Better::Lower, Target::None);
    let mut each = Vec::new();
    for _ in 0..outages {
        watch_connected(&watch).await?;
        *connected_at.lock().unwrap() = None;
        let pw = next_password();
        rx.borrow_and_update();
        let sent = Instant::now();
        let state = ctx
            .admin_post(
                "/emulator/a2a-hub/outage",
                json!({"ms": outage.as_millis() as u64}),
            )
            .await?;
        let answered = Instant::now();
        if state["a2a_hub_outage_ms"].as_u64().is_none() {
            return Err(format!("the emulator reports no A2A hub outage: {state}").into());
        }
        // The emulator started it between the request and its answer.
        let end = sent + (answered - sent) / 2 + outage;
        rotate_password(ctx, account, &pw).await?;
        until_held(&mut rx, &pw, outage + Duration::from_secs(120)).await?;
        let held = Instant::now();
        let secs = signed_secs(end, held);
        converge.runs.push(Triple {
            sdk: secs,
            raw: None,
            py: None,
        });
        let reconnect = (*connected_at.lock().unwrap()).map(|at| signed_secs(end, at));
        each.push(match reconnect {
            Some(r) => format!(
                "{secs:.2} s (the hub reconnected at {r:.2} s, the pulled value held {:.1} ms later)",
                (secs - r) * 1e3
            ),
            None => format!("{secs:.2} s"),
        });
    }
    py.notes.push(format!(
        "9b: after each {} s outage the watch held the rotated password {}, counted from the outage's end; \
         the listener's reconnect policy is the default (1 s doubling to 60 s, ±25 % jitter)",
        outage.as_secs(),
        each.join(", ")
    ));
    watch.stop().await;
    Ok(vec![p50, p99, converge])
}

// ---- workload 8: build times ----

fn read_build_table(path: &Path) -> Res<(Vec<BuildRow>, Option<String>)> {
    let text = std::fs::read_to_string(path)?;
    let caption = text
        .lines()
        .find(|l| l.starts_with("Build times"))
        .map(|l| l.trim_end_matches(':').to_owned());
    let rows = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| build |"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            (cells.len() >= 2).then(|| BuildRow {
                label: cells[0].to_owned(),
                time: cells[1].to_owned(),
            })
        })
        .collect();
    Ok((rows, caption))
}

// ---- the report ----

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v.abs() >= 100.0 {
        format!("{:.0}", v)
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_val(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{} {unit}", fmt_num(v)),
        _ => "—".into(),
    }
}

fn fmt_ratio(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.2}×"),
        _ => "—".into(),
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(f64::NAN);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores ({cpu}), {mem_gib:.1} GiB memory")
}

fn report(
    ctx: &Ctx,
    py: &Side,
    args: &Args,
    metrics: &[Metric],
    builds: &[BuildRow],
    build_caption: Option<String>,
) -> String {
    let mut s = String::new();
    let when = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    s.push_str(&format!(
        "safeguard-sdk benchmark, {when}, {}; {}; median of {} runs after a warm-up{}.\n\n",
        machine(),
        if args.quick {
            "--quick (smoke test: small counts, figures not meaningful)"
        } else {
            "full run"
        },
        ctx.runs,
        if py.exe.is_some() {
            ""
        } else {
            "; pysafeguard column skipped"
        },
    ));
    s.push_str(
        "| workload | sdk | raw reqwest | pysafeguard | sdk/raw | pysafeguard/sdk | peak RSS |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|\n");
    for m in metrics {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            m.label,
            fmt_val(Some(m.sdk()), m.unit),
            fmt_val(m.raw(), m.unit),
            fmt_val(m.py(), m.unit),
            fmt_ratio(m.sdk_raw()),
            fmt_ratio(m.py_sdk()),
            if m.rss.is_empty() { "" } else { m.rss.as_str() },
        ));
    }
    for b in builds {
        s.push_str(&format!(
            "| 8. build: {} | {} | — | — | — | — | |\n",
            b.label, b.time
        ));
    }
    s.push_str(&format!(
        "\nRatios are cost ratios (time per operation, or latency; for throughput the inverse), \
         computed round by round and reported as their median: sdk/raw above 1 means the SDK is slower \
         than raw reqwest; pysafeguard/sdk is how many times slower PySafeguard is. In each round the \
         SDK and raw reqwest take {SLICES} turns each, alternating which goes first. Raw reqwest decodes \
         into the same generated types as the SDK. \"CPU per call\": CPU time of the client process \
         (all threads; Python's process_time) and of the emulator during that side's calls. \"—\": \
         not measured (no raw SignalR client; no allocation counter in Python).\n",
    ));
    if let Some(c) = build_caption {
        s.push_str(&format!(
            "Build rows: one run of scripts/bench-build; {c}.\n"
        ));
    }
    s.push_str("\nTargets:\n\n");
    let mut line = |ok: bool, what: String| {
        s.push_str(&format!(
            "- {} {what}\n",
            if ok { "met:" } else { "MISSED:" }
        ))
    };
    for m in metrics {
        match m.target {
            Target::RawAndPython | Target::Raw => {
                if let Some(r) = m.sdk_raw() {
                    line(r <= 1.10, format!("sdk/raw ≤ 1.10 on {} ({r:.2})", m.label));
                }
                if m.target == Target::RawAndPython {
                    if let Some(r) = m.py_sdk() {
                        line(
                            r >= 20.0,
                            format!("pysafeguard/sdk ≥ 20 on {} ({r:.1})", m.label),
                        );
                    }
                }
            }
            Target::EventP99 => {
                let p = m.sdk();
                line(
                    p < 5000.0,
                    format!("event p99 < 5 ms ({:.2} ms)", p / 1000.0),
                );
            }
            Target::None => {}
        }
        if m.label.contains("peak RSS") {
            let r = m.sdk();
            line(r < 64.0, format!("download peak RSS < 64 MiB ({r:.1} MiB)"));
        }
    }
    if !py.notes.is_empty() || !args.notes.is_empty() {
        s.push_str("\nNotes:\n\n");
        for n in args.notes.iter().chain(py.notes.iter()) {
            s.push_str(&format!("- {n}\n"));
        }
    }
    s
}

async fn bench_main(args: Args) -> Res<()> {
    if let Some(pid) = args.emulator_pid {
        stats::set_server_pid(pid);
    }
    let conn: ConnectionInfo = serde_json::from_slice(&std::fs::read(&args.conn)?)?;
    let ca_pem = std::fs::read(&conn.spp.ca)?;
    let admin = conn.spp.admin.clone();
    let sdk = SafeguardClient::builder(conn.spp.host.clone())
        .ca_pem(&ca_pem)?
        .auth(PkceAuth::new(
            "local",
            admin.user.clone(),
            admin.password.clone(),
        ))
        .build()?;
    sdk.login().await?;
    let token = sdk
        .user_token()
        .await
        .ok_or("no user token")?
        .expose_secret()
        .to_owned();
    let raw = raw::client(&ca_pem, None, usize::MAX)?;
    let admin_http = raw::client(&ca_pem, None, usize::MAX)?;
    let mut notes = Vec::new();
    let py = match &args.python {
        Some(p) => match Python::start(p, &args.py_script, &args.conn).await {
            Ok(py) => Some(py),
            Err(e) => {
                notes.push(format!("pysafeguard column skipped: {e}"));
                None
            }
        },
        None => None,
    };
    let ctx = Ctx {
        conn,
        conn_path: args.conn.clone(),
        ca_pem,
        quick: args.quick,
        runs: args.runs,
        sdk,
        token,
        raw,
        admin: admin_http,
    };
    let mut py = Side {
        exe: py.as_ref().and(args.python.clone()),
        proc: py,
        script: args.py_script.clone(),
        notes,
    };
    let mut metrics = Vec::new();
    macro_rules! workload {
        ($number:literal, $name:literal, $f:ident) => {{
            if args.only.is_empty() || args.only.contains(&$number) {
                let t = Instant::now();
                eprintln!("==> {}", $name);
                metrics.extend(
                    $f(&ctx, &mut py)
                        .await
                        .map_err(|e| format!("{}: {e}", $name))?,
                );
                eprintln!("    done in {:.1?}", t.elapsed());
            }
        }};
    }
    workload!(1, "1. Me sequential", w1_me_sequential);
    workload!(2, "2. Me concurrent", w2_me_concurrent);
    workload!(3, "3. Users", w3_users);
    workload!(4, "4. A2A", w4_a2a);
    workload!(5, "5. sign-in", w5_login);
    workload!(6, "6. events", w6_events);
    workload!(7, "7. download", w7_download);
    workload!(9, "9. A2A watch", w9_a2a_watch);
    let (builds, caption) = match &args.build_table {
        Some(p) => match read_build_table(p) {
            Ok(b) => b,
            Err(e) => {
                py.notes.push(format!("build times unavailable: {e}"));
                (Vec::new(), None)
            }
        },
        None => {
            py.notes
                .push("build times not measured (no --build-table)".into());
            (Vec::new(), None)
        }
    };
    let text = report(&ctx, &py, &args, &metrics, &builds, caption);
    if let Some(p) = py.proc.take() {
        p.quit().await;
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &text)?;
    println!("{text}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("perf: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = if argv.first().map(String::as_str) == Some("download-child") {
        rt.block_on(child_main(&argv[1..]))
    } else {
        match parse_args(&argv) {
            Ok(args) => rt.block_on(bench_main(args)),
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perf: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
