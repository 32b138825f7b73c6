//! The running agent: load and attach, seed the process table, then move
//! events from the ring buffer through the pipeline to the sink until told
//! to stop; on stop, drain what the kernel already queued, detach, flush.

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use agent_common::{AggKey, EventKind};
use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use serde_json::json;
use thiserror::Error;
use tokio::{
    io::{Interest, unix::AsyncFd},
    time::Instant,
};
use tracing::{error, info};

use crate::{
    config::ProcessEnv,
    ebpf::{self, LoadError, loader::LoadOptions, tracefs::TracefsState},
    host::{self, Clock, Host},
    http::MetricsServer,
    metrics::Metrics,
    notify::{self, Notifier},
    pipeline::{Pipeline, PipelineStats},
    process::{ProcessTable, procfs},
    reader::{ReadMode, Step},
    record::LostCounts,
    sink::{Delivery, DeliveryConfig, DeliveryError},
};

/// Settings of a run. (The TOML config file and its validation come with
/// the ops issue; these are the knobs the foundation needs.)
#[derive(Debug, Clone)]
pub struct Config {
    /// Kernel ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Ancestry levels per record.
    pub ancestry_depth: usize,
    /// Process table bound.
    pub table_max: usize,
    /// How long an exited process stays in the table for its children's records.
    pub exit_grace: Duration,
    /// Window over which repeated accesses (PEEK/POKE, process_vm_*) are counted.
    pub aggregate_window: Duration,
    /// Enforce deny rules and protect the agent when the kernel allows it.
    pub enforce: bool,
    /// Policy directories (`*.yaml`, in order), grants file, their longest
    /// duration, and the root-only control socket.
    pub policy_dirs: Vec<std::path::PathBuf>,
    pub grants_path: std::path::PathBuf,
    pub grants_max: Duration,
    pub control_socket: std::path::PathBuf,
    /// Where `/metrics` and `/status` are served; `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// Sealing, spool, local sinks and NATS.
    pub delivery: DeliveryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ring_bytes: agent_common::DEFAULT_RING_BYTES,
            ancestry_depth: 16,
            table_max: 262_144,
            exit_grace: Duration::from_secs(10),
            aggregate_window: Duration::from_secs(5),
            enforce: true,
            policy_dirs: vec![std::path::PathBuf::from("/etc/debugmon/policies.d")],
            grants_path: std::path::PathBuf::from("/var/lib/debugmon/grants.json"),
            grants_max: Duration::from_secs(4 * 3600),
            control_socket: std::path::PathBuf::from("/run/debugmon/control.sock"),
            metrics_listen: None,
            delivery: DeliveryConfig::default(),
        }
    }
}

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("loading the eBPF programs")]
    Load(#[from] LoadError),
    #[error("record delivery")]
    Sink(#[from] DeliveryError),
    #[error("polling the ring buffer")]
    Poll(#[source] std::io::Error),
    #[error("setting the ring buffer's reader flag (READER_IDLE)")]
    ReaderFlag(#[source] aya::maps::MapError),
    #[error("installing the SIGINT/SIGTERM handlers")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Governance(#[from] crate::governance::GovernanceError),
}

/// Batches larger than this are shipped mid-drain, bounding memory.
const MAX_BATCH: usize = 256 * 1024;
/// Batches per drain call before yielding to the timer.
const MAX_DRAIN_BATCHES: usize = 64;

/// What a finished run did.
#[derive(Debug, Clone, Copy)]
pub struct RunSummary {
    pub stats: PipelineStats,
    pub lost: LostCounts,
}

fn read_lost(map: &PerCpuArray<MapData, u64>) -> LostCounts {
    let sum = |k: EventKind| -> u64 {
        match map.get(&(k as u32), 0) {
            Ok(v) => v.iter().sum(),
            Err(e) => {
                error!(error = %e, "reading the kernel drop counters failed");
                0
            }
        }
    };
    LostCounts {
        exec: sum(EventKind::Exec),
        fork: sum(EventKind::Fork),
        exit: sum(EventKind::Exit),
        access: sum(EventKind::Access),
        undecodable: 0,
        spool_shed: 0,
    }
}

/// Cumulative repeat counts per aggregated access, summed over CPUs.
fn read_aggregates(map: &PerCpuHashMap<MapData, AggKey, u64>) -> Vec<(AggKey, u64)> {
    let mut out = Vec::new();
    for item in map.iter() {
        match item {
            Ok((k, v)) => out.push((k, v.iter().sum())),
            // An entry evicted during iteration: its repeats show next window.
            Err(e) => tracing::debug!(error = %e, "reading an aggregate entry failed"),
        }
    }
    out
}

/// After the kill fallback removed a tracer, its tracee may be left in a
/// stopped state (an attach delivers SIGSTOP): continue it, so enforcement
/// never leaves a protected service frozen.
fn resume_stopped(pids: Vec<u32>) {
    for pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let stopped = status.lines().any(|l| {
            l.starts_with("State:") && (l.contains("(stopped)") || l.contains("(tracing stop)"))
        });
        let traced = status
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"));
        if stopped && !traced {
            // SAFETY: plain syscall; the pid was read from /proc just now.
            let rc = unsafe { libc::kill(pid as i32, libc::SIGCONT) };
            info!(pid, rc, "resumed a process its killed tracer left stopped");
        }
    }
}

/// Parsing the kernel's BTF (twice: for our offsets and for aya's
/// relocations) peaks at ~90 MiB of heap, all of it freed by now; glibc
/// keeps freed heap mapped unless asked, which was most of the agent's
/// resident memory for the rest of its life.
fn release_startup_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Moves queued events through the pipeline to the sink. Returns `true`
/// when the ring buffer was emptied, `false` when it stopped after
/// `MAX_DRAIN_BATCHES` so that the timer tick is not starved under load.
async fn drain(
    ring: &mut RingBuf<MapData>,
    p: &mut Pipeline,
    sink: &Delivery,
) -> Result<bool, DeliveryError> {
    for _ in 0..MAX_DRAIN_BATCHES {
        let mut full = false;
        while let Some(item) = ring.next() {
            p.handle(&item);
            drop(item); // releases the ring space before the await below
            if p.pending_bytes() >= MAX_BATCH {
                full = true;
                break;
            }
        }
        sink.send(p.take_batch()).await?;
        if !full {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Asks the kernel to wake the agent at the next record-making event.
fn sleep_on_wake(flag: &mut Array<MapData, u32>) -> Result<(), AgentError> {
    flag.set(0, 1, 0).map_err(AgentError::ReaderFlag)
}

/// Runs until `shutdown` completes. Startup errors are returned before any
/// record is written.
pub async fn run(
    cfg: &Config,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, AgentError> {
    let metrics = Arc::new(Metrics::new());
    // Watching matters more than being watched: a taken port costs the
    // endpoint (loudly), not the monitoring.
    let metrics_server = match cfg.metrics_listen {
        Some(addr) => match MetricsServer::bind(addr).await {
            Ok(s) => Some(s),
            Err(e) => {
                error!(
                    "{}; running without /metrics and /status",
                    ebpf::loader::error_chain(&e)
                );
                None
            }
        },
        None => None,
    };
    let metrics_addr = metrics_server.as_ref().and_then(|s| s.local_addr().ok());
    let notifier = Arc::new(Notifier::from_env(&ProcessEnv).unwrap_or_else(|e| {
        error!(error = %e, "systemd notifications disabled");
        Notifier::disabled()
    }));
    // A broken policy stops the agent before anything is loaded.
    let policy = Arc::new(crate::governance::load_policy(&cfg.policy_dirs)?);
    let loaded = ebpf::load_and_attach(&LoadOptions {
        ring_bytes: cfg.ring_bytes,
        agent_tgid: std::process::id(),
        enforce: cfg.enforce,
    })?;
    let ebpf::Loaded {
        ebpf,
        ring,
        mut reader_idle,
        lost,
        agg,
        attached,
        tracefs,
        offsets: _,
        enforcer,
        mechanism_reason,
    } = loaded;
    let mechanism = enforcer.mechanism();
    release_startup_heap();

    let mut table = ProcessTable::new(
        cfg.table_max,
        u64::try_from(cfg.exit_grace.as_nanos()).unwrap_or(u64::MAX),
        procfs::tick_ns(),
    );
    for entry in procfs::snapshot(Path::new("/proc")) {
        table.insert(entry);
    }
    let seeded = table.len();
    let host = Host::detect();
    let enricher = crate::enrich::Enricher::for_host(cfg.ancestry_depth);
    let builder = crate::record::RecordBuilder::new(host.clone(), Clock::sample(), enricher);
    let mut p = Pipeline::new(table, builder);
    let rule_names = enforcer
        .policy()
        .rules
        .iter()
        .map(|r| r.name.clone())
        .collect();
    p.set_protector(Box::new(enforcer), rule_names);
    p.set_metrics(Arc::clone(&metrics));
    let (stop_control, control_stopped) = tokio::sync::watch::channel(false);
    let (mut gov, expired) = crate::governance::Governance::start(
        &crate::governance::GovernanceConfig {
            policy_dirs: cfg.policy_dirs.clone(),
            grants_path: cfg.grants_path.clone(),
            grants_max: cfg.grants_max,
            control_socket: cfg.control_socket.clone(),
        },
        &policy,
        mechanism,
        async move {
            let mut rx = control_stopped;
            let _ = rx.changed().await;
        },
    )?;
    *p.decider_mut() = crate::decide::Decider::new(Arc::clone(&policy), Some(gov.store()));
    let kernel_notes = gov.install(Arc::clone(&policy), &mut p);
    let sink = Delivery::start(cfg.delivery.clone())?;
    metrics.update_info(|i| {
        i.kernel = host::kernel_release();
        i.programs = attached.iter().map(ToString::to_string).collect();
        i.sinks = sink.sink_names();
        i.enforcement = mechanism.as_str().to_owned();
    });

    p.agent_record(
        host::boottime_ns(),
        json!({
            "event": "started",
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "kernel": host::kernel_release(),
            "programs": attached,
            "tracefs": match &tracefs {
                TracefsState::AlreadyMounted(_) => "present",
                TracefsState::MountedByUs(_) => "mounted by debugmon",
            },
            "ring_bytes": cfg.ring_bytes,
            "enforcement": {
                "mechanism": mechanism.as_str(),
                "reason": mechanism_reason,
            },
            "processes_seeded": seeded,
            "policy": {
                "hash": policy.content_hash(),
                "rules": policy.rule_count(),
                "dirs": cfg.policy_dirs,
                "kernel_notes": kernel_notes,
            },
            "metrics": metrics_addr.map(|a| a.to_string()),
            "public_key": sink.public_key(),
        }),
    );
    for g in &expired {
        p.grant_record(
            host::boottime_ns(),
            json!({"event": g.event, "grant": g.grant}),
        );
    }
    sink.send(p.take_batch()).await?;
    // systemd (Type=notify) counts the service as started only now: every
    // program is attached and the start record is out.
    sink.flushed().await?;
    let _serving = metrics_server.map(|s| s.serve(Arc::clone(&metrics)));
    if let Some(addr) = metrics_addr {
        info!(%addr, "metrics at http://{addr}/metrics, status at http://{addr}/status");
    }
    notifier.ready(&format!("{} programs attached", attached.len()));
    let _watchdog = notify::watchdog_interval(&ProcessEnv)
        .filter(|_| notifier.is_enabled())
        .map(|every| notify::spawn_watchdog(Arc::clone(&notifier), every));
    info!(
        programs = attached.len(),
        host = %host.name,
        processes = seeded,
        "ready: {} programs attached, records go to {}",
        attached.len(),
        sink.sink_names().join(", ")
    );

    // SAFETY: the RingBuf owns its map fd, which stays open and unchanged
    // for as long as the RingBuf lives inside the AsyncFd.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| AgentError::Poll(e.into()))?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let window = cfg.aggregate_window.max(Duration::from_secs(1));
    let mut agg_tick = tokio::time::interval_at(tokio::time::Instant::now() + window, window);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut last_events = 0;
    sleep_on_wake(&mut reader_idle)?;
    let mut mode = ReadMode::START;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(AgentError::Signals)?;
    loop {
        let deadline = mode.deadline();
        // Never polled: the branch is disabled without a deadline.
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            guard = ring.readable_mut(), if mode.waits_for_wake() => {
                // Readiness that came in after the guard was taken
                // survives `clear_ready`. Read at once: the kernel cleared
                // READER_IDLE, so reading costs no further wake-up, and the
                // waking event (a quiet host's record, or a protected
                // process's fork the kill fallback must learn of) waits for
                // nothing. Then poll while events flow.
                guard.map_err(AgentError::Poll)?.clear_ready();
                drain(ring.get_mut(), &mut p, &sink).await?;
                mode = ReadMode::woken(Instant::now());
            }
            () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                let before = p.stats().events;
                let emptied = drain(ring.get_mut(), &mut p, &sink).await?;
                let handled = p.stats().events - before;
                mode = match mode.after_read(handled, emptied, Instant::now()) {
                    Step::Mode(m) => m,
                    Step::Sleep => {
                        sleep_on_wake(&mut reader_idle)?;
                        drain(ring.get_mut(), &mut p, &sink).await?;
                        ReadMode::asleep(Instant::now())
                    }
                };
            }
            _ = tick.tick() => {
                // Also drain here: a missed wakeup can delay records by at
                // most one tick, never strand them. While waiting, set the
                // flag again first: an event that cleared it but found the
                // ring full woke nobody, and would leave every later
                // record to this tick.
                if mode.waits_for_wake() {
                    sleep_on_wake(&mut reader_idle)?;
                }
                drain(ring.get_mut(), &mut p, &sink).await?;
                p.set_clock(Clock::sample());
                let now = host::boottime_ns();
                let kernel_lost = LostCounts { spool_shed: sink.spool_shed(), ..read_lost(&lost) };
                p.report_lost(now, kernel_lost);
                p.reap(now);
                resume_stopped(p.take_resume());
                gov.poll_grants(&mut p, now);
                for g in p.take_grant_uses() {
                    gov.note_use(&mut p, &g, now);
                }
                gov.poll_reload(&mut p, now);
                sink.send(p.take_batch()).await?;
                publish(&metrics, &notifier, &p, kernel_lost, attached.len(), &mut last_events);
            }
            _ = hup.recv() => {
                info!("SIGHUP received: reloading the policy");
                gov.reload_now(&mut p, host::boottime_ns());
                sink.send(p.take_batch()).await?;
            }
            _ = agg_tick.tick() => {
                drain(ring.get_mut(), &mut p, &sink).await?;
                p.report_aggregates(host::boottime_ns(), window.as_secs(), read_aggregates(&agg));
                sink.send(p.take_batch()).await?;
            }
        }
    }

    notifier.stopping();
    let _ = stop_control.send(true);
    info!("stopping: draining the ring buffer");
    while !drain(ring.get_mut(), &mut p, &sink).await? {}
    p.report_aggregates(host::boottime_ns(), window.as_secs(), read_aggregates(&agg));
    let kernel_lost = LostCounts {
        spool_shed: sink.spool_shed(),
        ..read_lost(&lost)
    };
    let now = host::boottime_ns();
    p.report_lost(now, kernel_lost);
    let stats = p.stats();
    p.agent_record(
        now,
        json!({
            "event": "stopped",
            "events": stats.events,
            "records": stats.records + 1,
            "lost": {
                "exec": kernel_lost.exec,
                "fork": kernel_lost.fork,
                "exit": kernel_lost.exit,
                "access": kernel_lost.access,
                "undecodable": stats.undecodable,
                "spool_shed": kernel_lost.spool_shed,
            },
        }),
    );
    sink.send(p.take_batch()).await?;
    // Detach before the final flush: nothing new can arrive after this.
    drop(ring);
    drop(lost);
    drop(agg);
    drop(ebpf);
    let bytes = sink.close().await?;
    info!(records = stats.records + 1, bytes, "stopped");
    Ok(RunSummary {
        stats,
        lost: kernel_lost,
    })
}

/// Copies the once-a-second numbers into the metrics registry and tells
/// systemd a one-line summary (`systemctl status` shows it).
fn publish(
    metrics: &Metrics,
    notifier: &Notifier,
    p: &Pipeline,
    kernel_lost: LostCounts,
    programs: usize,
    last_events: &mut u64,
) {
    let stats = p.stats();
    metrics.set_kernel_lost([
        kernel_lost.exec,
        kernel_lost.fork,
        kernel_lost.exit,
        kernel_lost.access,
    ]);
    metrics.set_undecodable(stats.undecodable);
    metrics.set_process_table(p.table().len() as u64);
    if notifier.is_enabled() {
        let rate = stats.events.saturating_sub(*last_events);
        notifier.status(&format!(
            "{programs} programs attached; {rate} events/s; {} records; {} lost",
            stats.records,
            kernel_lost.total() + stats.undecodable
        ));
    }
    *last_events = stats.events;
}
