//! Start-up, in the order that makes a failure safe: the policy is loaded
//! before anything is attached (a broken one stops the agent with its
//! file:line:column), the programs are attached and the process table
//! seeded before the first record, and systemd hears READY only once the
//! start record is durable.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use serde_json::json;
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::watch,
};
use tracing::{error, info};

use super::{
    AgentError, Settings,
    counters::{Handover, Kernel},
    governance::{Governance, GovernanceConfig, load_policy},
    heartbeat::Cadence,
    pipeline::Pipeline,
    read_timer::ReadTimer,
    reader::ReadMode,
    running::{Running, Timers},
};
use crate::{
    decide::Decider,
    ebpf::{self, loader::LoadOptions, tracefs::TracefsState},
    enrich::Enricher,
    error::error_chain,
    event::Kind,
    metrics::{Metrics, http::MetricsServer},
    process::{ProcessTable, procfs},
    record::RecordBuilder,
    sink::Delivery,
    sys::{
        env::ProcessEnv,
        host::{self, Clock, Host},
        notify::{self, Notifier},
    },
};

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

/// Watching matters more than being watched: a taken port costs the
/// endpoint (loudly), not the monitoring.
async fn bind_metrics(cfg: &Settings) -> Option<MetricsServer> {
    let addr = cfg.metrics_listen?;
    match MetricsServer::bind(addr).await {
        Ok(s) => Some(s),
        Err(e) => {
            error!("{}; running without /metrics and /status", error_chain(&e));
            None
        }
    }
}

/// The agent's programs, maps and links by id, for the start record: what
/// `bpf()` may not touch (and what `bpftool` shows as the agent's).
fn objects_detail(objects: &[agent_common::ObjectKey]) -> serde_json::Value {
    use agent_common::object_kind;
    let ids = |kind| {
        objects
            .iter()
            .filter(|o| o.kind == kind)
            .map(|o| o.id)
            .collect::<Vec<_>>()
    };
    json!({
        "programs": ids(object_kind::PROG),
        "maps": ids(object_kind::MAP),
        "links": ids(object_kind::LINK),
    })
}

/// The process table, seeded from /proc: processes that started before
/// the agent appear in ancestries.
fn seeded_table(cfg: &Settings) -> ProcessTable {
    let mut table = ProcessTable::new(
        cfg.table_max,
        u64::try_from(cfg.exit_grace.as_nanos()).unwrap_or(u64::MAX),
        procfs::tick_ns(),
    );
    for entry in procfs::snapshot(Path::new("/proc")) {
        table.insert(entry);
    }
    table
}

impl Running {
    pub(super) async fn start(cfg: &Settings) -> Result<Self, AgentError> {
        let metrics = Arc::new(Metrics::new());
        let metrics_server = bind_metrics(cfg).await;
        let metrics_addr = metrics_server.as_ref().and_then(|s| s.local_addr().ok());
        let notifier = Arc::new(Notifier::from_env(&ProcessEnv).unwrap_or_else(|e| {
            error!(error = %e, "systemd notifications disabled");
            Notifier::disabled()
        }));
        // A broken policy stops the agent before anything is loaded.
        let policy = Arc::new(load_policy(&cfg.policy_dirs)?);
        let loaded = ebpf::load_and_attach(&LoadOptions {
            ring_bytes: cfg.ring_bytes,
            agent_tgid: std::process::id(),
            enforce: cfg.enforce,
            kernel_log: cfg.kernel_log,
            env_names: crate::enrich::switches::DEFAULT_ENV_NAMES
                .iter()
                .map(|n| (*n).to_owned())
                .collect(),
        })?;
        let mechanism = loaded.enforcer.mechanism();
        let (kernel, h) = Kernel::split(loaded);
        let Handover {
            ring,
            mut enforcer,
            attached,
            tracefs,
            mechanism_reason,
            objects,
            kernel_log,
        } = h;
        release_startup_heap();
        // The agent is protected by what it is, not by a name: its threads
        // and its programs, maps and links.
        if let Err(e) = enforcer
            .protect_self(std::process::id())
            .and_then(|()| enforcer.protect_objects(&objects))
        {
            error!(error = %error_chain(&e), "cannot protect the agent itself in the kernel");
        }

        let table = seeded_table(cfg);
        let seeded = table.len();
        let host = Host::detect();
        let enricher = Enricher::for_host(cfg.ancestry_depth);
        let builder = RecordBuilder::new(host.clone(), Clock::sample());
        let mut p = Pipeline::new(table, enricher, builder);
        p.set_protector(Box::new(enforcer));
        p.set_metrics(Arc::clone(&metrics));
        let (stop_control, control_stopped) = watch::channel(false);
        // The grants file is sealed with the host key the records are: the
        // store is handed the key, it does not look for it.
        let host_key = Arc::new(crate::record::seal::load_or_create_key(
            &cfg.delivery.key_path,
        )?);
        let (approvals, bus, mut requests_dropped) =
            super::approvals::open(cfg, &host.name, &host_key)?;
        let (mut gov, mut expired) = Governance::start(
            &GovernanceConfig {
                policy_dirs: cfg.policy_dirs.clone(),
                grants_path: cfg.grants_path.clone(),
                grants_max: cfg.grants_max,
                control_socket: cfg.control_socket.clone(),
                etc: PathBuf::from("/etc"),
            },
            &policy,
            host_key,
            approvals,
            async move {
                let mut rx = control_stopped;
                let _ = rx.changed().await;
            },
        )?;
        expired.append(&mut requests_dropped);
        if let Some(bus) = bus {
            tokio::spawn(super::approvals::run(
                bus.into_bus(gov.store(), gov.sender()),
                stop_control.subscribe(),
            ));
        }
        *p.decider_mut() = Decider::new(Arc::clone(&policy), Some(gov.store()));
        p.apply(gov.install(Arc::clone(&policy)));
        let sink = Delivery::start(cfg.delivery.clone())?;
        p.set_redactor(sink.redactor());
        metrics.update_info(|i| {
            i.kernel = host::kernel_release();
            i.programs = attached.iter().map(ToString::to_string).collect();
            i.sinks = sink.sink_names();
            i.enforcement = mechanism.as_str().to_owned();
            i.bpf_lsm_active = crate::ebpf::enforce::mechanism::active_lsms()
                .ok()
                .map(|(list, _)| crate::ebpf::enforce::mechanism::lsm_list_has_bpf(&list));
        });
        metrics.set_heartbeat_interval(cfg.heartbeat.unwrap_or_default());

        let started_ns = host::boottime_ns();
        p.note(
            started_ns,
            Kind::Agent,
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
                "read_interval_ms": u64::try_from(cfg.read_interval.as_millis()).unwrap_or(u64::MAX),
                "enforcement": {
                    "mechanism": mechanism.as_str(),
                    "reason": mechanism_reason,
                    "parts": mechanism.parts(),
                },
                "processes_seeded": seeded,
                "policy": {
                    "hash": policy.content_hash(),
                    "rules": policy.rule_count(),
                    "dirs": cfg.policy_dirs,
                    "kernel_notes": gov.kernel_notes(),
                },
                "bpf_objects": objects_detail(&objects),
                "metrics": metrics_addr.map(|a| a.to_string()),
                // Declared here, not only in the heartbeats: a run killed
                // or frozen before its first heartbeat is still judged.
                "heartbeat_s": cfg.heartbeat.map_or(0, |d| d.as_secs()),
                // How often this run writes `inventory` records (0: never).
                "inventory_s": cfg.inventory.map_or(0, |d| d.as_secs()),
                "public_key": sink.public_key(),
            }),
        );
        p.apply(expired);
        sink.send(p.take_records()).await?;
        // systemd (Type=notify) counts the service as started only now: every
        // program is attached and the start record is out.
        sink.flushed().await?;
        let serving = metrics_server.map(|s| s.serve(Arc::clone(&metrics)));
        if let Some(addr) = metrics_addr {
            info!(%addr, "metrics at http://{addr}/metrics, status at http://{addr}/status");
        }
        notifier.ready(&format!("{} programs attached", attached.len()));
        let watchdog = notify::watchdog_interval(&ProcessEnv)
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
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| AgentError::Poll(e.into()))?;
        let kernel_log = kernel_log
            .map(crate::ebpf::kernel_log::spawn)
            .transpose()
            .map_err(AgentError::Poll)?;
        let mut a = Self {
            _kernel_log: kernel_log,
            ring,
            reader: ReadMode::START,
            read_timer: ReadTimer::new().map_err(AgentError::ReadTimer)?,
            read_interval: cfg.read_interval,
            timers: Timers::new(cfg.aggregate_window)?,
            kernel,
            p,
            sink,
            gov,
            metrics,
            notifier,
            programs: attached.len(),
            last_events: 0,
            collisions_reported: 0,
            heartbeat: cfg.heartbeat.map(|every| Cadence::new(every, started_ns)),
            inventory: cfg.inventory.map(|every| Cadence::new(every, started_ns)),
            stop_control,
            _serving: serving,
            _watchdog: watchdog,
            reload: cfg.reload.clone(),
        };
        if a.inventory.is_some() {
            a.take_inventory(host::boottime_ns());
            a.sink.send(a.p.take_records()).await?;
        }
        a.sleep_on_wake()?;
        Ok(a)
    }
}
