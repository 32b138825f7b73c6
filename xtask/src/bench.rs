//! `cargo xtask bench`: what debugmon costs a host, measured against
//! baselines run in the same invocation (absolute times drift on a shared
//! 2-core machine; ratios of interleaved runs hold). Exec and ptrace
//! overhead against no monitor and auditd, the event rate the pipeline
//! sustains without loss, exec -> stdout latency, agent CPU and memory, and
//! the criterion micro-benchmarks. Prints a table, writes bench/results.json.

mod agent;
mod audit;
mod micro;
mod report;
mod storm;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
pub(crate) use storm::fork_child;

use self::{
    agent::{Agent, proc_usage},
    report::{Report, Row},
    storm::{StormResult, exec_storm, fork_storm, strace_loop},
};
use crate::run::{cmd, is_root, root, sh};

/// Execs per storm run, over [`WORKERS`] spawning threads.
const EXECS: u64 = 10_000;
const WORKERS: usize = 2;
/// Interleaved rounds of (none, debugmon, auditd); medians are taken over them.
const ROUNDS: usize = 5;
/// Bytes `dd` copies one at a time under strace: two syscalls each.
const STRACE_BYTES: u64 = 20_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    None,
    Debugmon,
    Auditd,
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

/// Latency of the execs of one storm, from the records that came out.
pub(crate) struct Latency {
    /// Driver's spawn call -> line read from the agent's stdout, sorted, ns.
    pub spawn_to_stdout: Vec<u64>,
    /// Kernel event (`monotonic_ns`) -> line read, sorted, ns.
    pub kernel_to_stdout: Vec<u64>,
    pub matched: u64,
}

fn latency(agent: &Agent, storm: &StormResult) -> Latency {
    let mut a = Vec::new();
    let mut k = Vec::new();
    agent.scan_lines(|line, arrived| {
        let Some(pos) = line.find(&storm.prefix) else {
            return;
        };
        if !line.contains("\"kind\":\"exec\"") {
            return;
        }
        let nonce: String = line[pos..].chars().take_while(|&c| c != '"').collect();
        if let Some(t) = storm.spawn_time(&nonce) {
            a.push(arrived.saturating_sub(t));
        }
        let mono = line
            .split_once("\"monotonic_ns\":")
            .and_then(|(_, r)| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|d| d.parse::<u64>().ok());
        if let Some(m) = mono {
            k.push(arrived.saturating_sub(m));
        }
    });
    a.sort_unstable();
    k.sort_unstable();
    Latency {
        matched: a.len() as u64,
        spawn_to_stdout: a,
        kernel_to_stdout: k,
    }
}

/// Cumulative kernel drops, as the latest `lost` record says.
fn lost_cumulative(agent: &Agent) -> u64 {
    agent
        .records_where(|l| l.contains("\"kind\":\"lost\""))
        .last()
        .and_then(|r| r["detail"]["cumulative"].as_object().cloned())
        .map_or(0, |m| {
            m.values().filter_map(serde_json::Value::as_u64).sum()
        })
}

/// The best of three strace runs (syscalls/s): on a shared machine, noise
/// only ever slows a run down, so the fastest is the least disturbed.
fn strace_best() -> Result<f64> {
    let mut best: f64 = 0.0;
    for _ in 0..3 {
        best = best.max(strace_loop(STRACE_BYTES)?.1);
    }
    Ok(best)
}

/// Agent memory: RSS and peak right after start, then the peak under load
/// alone (the start peak is reset through /proc/PID/clear_refs).
#[derive(Default)]
struct Mem {
    idle_rss: u64,
    start_hwm: u64,
    load_hwm: u64,
}

impl Mem {
    fn after_start(&mut self, pid: u32) -> Result<()> {
        let u = proc_usage(pid)?;
        self.idle_rss = self.idle_rss.max(u.rss_kib);
        self.start_hwm = self.start_hwm.max(u.hwm_kib);
        // "5" resets VmHWM to the current RSS (proc(5), since Linux 4.0).
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("resetting VmHWM")?;
        Ok(())
    }

    fn after_load(&mut self, pid: u32) -> Result<()> {
        self.load_hwm = self.load_hwm.max(proc_usage(pid)?.hwm_kib);
        Ok(())
    }
}

/// What one measured debugmon storm showed besides its throughput.
pub(crate) struct AgentRun {
    pub events: u64,
    pub lost: u64,
    pub cpu_s: f64,
    pub secs: f64,
    pub latency: Latency,
    pub spawned: u64,
}

fn as_storm(s: &StormResult) -> Option<&StormResult> {
    Some(s)
}

fn no_storm<T>(_: &T) -> Option<&StormResult> {
    None
}

/// Runs `work` with the agent watching; events, drops and CPU are deltas.
fn measured<T>(
    agent: &Agent,
    work: impl FnOnce() -> Result<T>,
    storm_of: impl Fn(&T) -> Option<&StormResult>,
) -> Result<(T, AgentRun)> {
    agent.clear();
    let (ev0, lost0) = agent.scrape()?;
    let u0 = proc_usage(agent.pid())?;
    let t0 = std::time::Instant::now();
    let out = work()?;
    let secs = t0.elapsed().as_secs_f64();
    // The records of the last execs are still on their way: wait for the
    // agent's counters to settle (two equal scrapes) before reading them.
    let mut last = agent.scrape()?;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let now = agent.scrape()?;
        if now == last {
            break;
        }
        last = now;
    }
    let u1 = proc_usage(agent.pid())?;
    let (lat, spawned) = match storm_of(&out) {
        Some(s) => (latency(agent, s), s.spawned),
        None => (
            Latency {
                spawn_to_stdout: Vec::new(),
                kernel_to_stdout: Vec::new(),
                matched: 0,
            },
            0,
        ),
    };
    let run = AgentRun {
        events: last.0 - ev0,
        lost: last.1 - lost0,
        cpu_s: u1.cpu_s - u0.cpu_s,
        secs,
        latency: lat,
        spawned,
    };
    Ok((out, run))
}

pub(crate) fn bench() -> Result<()> {
    if !is_root() {
        bail!("the bench loads eBPF programs and drives auditd: run it as root");
    }
    let started = std::time::Instant::now();
    crate::prereq::ensure_all()?;
    sh(cmd("cargo").args(["build", "--release", "-p", "agent"]))?;
    micro::build()?;
    wait_for_no_other_agents()?;
    let bin = root().join("target/release/debugmon");
    let state = std::env::temp_dir().join(format!("debugmon-bench-{}", std::process::id()));
    let mut rep = Report::new();
    let res = run_all(&bin, &state, &mut rep);
    let _ = std::fs::remove_dir_all(&state);
    res?;
    rep.finish(started.elapsed())
}

/// Pids of running `debugmon` processes other than the bench's own agent.
fn other_agents(own: Option<u32>) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| Some(pid) != own)
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Zombies hold no programs and feed nobody.
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'));
            comm.trim() == "debugmon" && !zombie
        })
        .collect()
}

/// Another debugmon on the host would skew every figure, and two agents
/// feed each other: each one's /proc/<pid>/environ reads (enrichment) are
/// the other's `mem_access` events, without end (see BENCHMARKS.md). Other
/// worktrees' tests start agents for seconds at a time: wait for a gap.
fn wait_for_no_other_agents() -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut quiet_since = std::time::Instant::now();
    loop {
        let others = other_agents(None);
        if !others.is_empty() {
            if std::time::Instant::now() > deadline {
                bail!(
                    "debugmon is running (pids {others:?}) and did not stop within 5 min; the bench needs the only agent"
                );
            }
            eprintln!("bench: waiting for other debugmon agents to exit: {others:?}");
            quiet_since = std::time::Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(3) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One round's figures, per mode (index as in [`MODES`]).
struct RoundOut {
    execs: [Option<f64>; 3],
    straces: [Option<f64>; 3],
    run: AgentRun,
}

const MODES: [Mode; 3] = [Mode::None, Mode::Debugmon, Mode::Auditd];

/// One interleaved round; `Ok(Err(why))` when another agent disturbed it.
fn one_round(
    bin: &std::path::Path,
    state: &std::path::Path,
    round: usize,
    audit_ok: bool,
    mem: &mut Mem,
) -> Result<std::result::Result<RoundOut, String>> {
    let mut execs = [None; 3];
    let mut straces = [None; 3];
    let mut run = None;
    // Rotated each round, so no mode always follows the same one (an
    // auditd teardown, an agent's exit) and order effects average out.
    for k in 0..MODES.len() {
        let i = (round + k) % MODES.len();
        let mode = MODES[i];
        eprintln!("bench: round {}, {mode:?}", round + 1);
        match mode {
            Mode::None => {
                execs[i] = Some(exec_storm(EXECS, WORKERS, None, "n")?.per_sec());
                straces[i] = Some(strace_best()?);
            }
            Mode::Debugmon => {
                let a = Agent::start(bin, &state.join(format!("r{round}")), &[])?;
                std::thread::sleep(Duration::from_secs(1));
                mem.after_start(a.pid())?;
                let (s, r) = measured(&a, || exec_storm(EXECS, WORKERS, None, "d"), as_storm)?;
                execs[i] = Some(s.per_sec());
                straces[i] = Some(strace_best()?);
                mem.after_load(a.pid())?;
                run = Some(r);
                if let Err(e) = a.stop() {
                    return Ok(Err(format!("round {}: {e:#}", round + 1)));
                }
            }
            Mode::Auditd => {
                if audit_ok {
                    let _a = audit::Auditd::start()?;
                    execs[i] = Some(exec_storm(EXECS, WORKERS, None, "a")?.per_sec());
                    straces[i] = Some(strace_best()?);
                }
            }
        }
        let others = other_agents(None);
        if !others.is_empty() {
            return Ok(Err(format!(
                "round {}: other debugmon {others:?} running",
                round + 1
            )));
        }
    }
    Ok(Ok(RoundOut {
        execs,
        straces,
        run: run.context("invariant: every round runs the agent")?,
    }))
}

fn run_all(bin: &std::path::Path, state: &std::path::Path, rep: &mut Report) -> Result<()> {
    // Does the kernel let us audit at all? Checked once, said in the table.
    let audit_ok = match audit::Auditd::start() {
        Ok(a) => {
            drop(a);
            Ok(())
        }
        Err(e) => Err(format!("{e:#}")),
    };
    let mut execs: [Vec<f64>; 3] = Default::default();
    let mut straces: [Vec<f64>; 3] = Default::default();
    let mut runs = Vec::new();
    let mut mem = Mem::default();
    let mut discarded = Vec::new();
    let mut attempt = 0;
    while runs.len() < ROUNDS {
        if attempt >= ROUNDS + 4 {
            bail!("too many rounds disturbed by other agents: {discarded:?}");
        }
        wait_for_no_other_agents()?;
        let r = one_round(bin, state, attempt, audit_ok.is_ok(), &mut mem)?;
        attempt += 1;
        match r {
            Ok(r) => {
                for i in 0..3 {
                    execs[i].extend(r.execs[i]);
                    straces[i].extend(r.straces[i]);
                }
                runs.push(r.run);
            }
            Err(why) => {
                eprintln!("bench: round discarded: {why}");
                discarded.push(why);
            }
        }
    }
    rep.push(Row::info(
        "overhead rounds discarded (another agent appeared, or ours did not stop)",
        if discarded.is_empty() {
            "none".into()
        } else {
            discarded.join("; ")
        },
    ));
    let [en, ed, ea] = execs;
    let [sn, sd, sa] = straces;
    rep.overhead("exec storm (execs/s)", &en, &ed, &ea, &audit_ok, 0.97);
    rep.overhead(
        "strace -f syscall loop (syscalls/s)",
        &sn,
        &sd,
        &sa,
        &audit_ok,
        0.0,
    );

    // Max-rate storms with the agent: losses, latency, CPU.
    let lost_at_max: u64 = runs.iter().map(|r| r.lost).sum();
    let unmatched: u64 = runs.iter().map(|r| r.spawned - r.latency.matched).sum();
    rep.push(Row::goal(
        "lost at max exec rate (kernel drops / execs without record)",
        format!(
            "{lost_at_max} / {unmatched} of {}",
            runs.iter().map(|r| r.spawned).sum::<u64>()
        ),
        "0",
        lost_at_max == 0 && unmatched == 0,
    ));
    let mut all_a: Vec<u64> = runs
        .iter()
        .flat_map(|r| r.latency.spawn_to_stdout.clone())
        .collect();
    let mut all_k: Vec<u64> = runs
        .iter()
        .flat_map(|r| r.latency.kernel_to_stdout.clone())
        .collect();
    all_a.sort_unstable();
    all_k.sort_unstable();
    rep.latency("exec->stdout at max rate, from spawn call", &all_a, true);
    rep.latency("exec->stdout at max rate, from kernel event", &all_k, false);
    let events: u64 = runs.iter().map(|r| r.events).sum();
    let cpu: f64 = runs.iter().map(|r| r.cpu_s).sum();
    let secs: f64 = runs.iter().map(|r| r.secs).sum();
    rep.push(Row::info(
        "agent CPU per 10,000 events (max-rate exec storm)",
        format!(
            "{:.3} s ({events} events in {secs:.1} s = {:.0} events/s; {:.0}% of one core)",
            cpu / events.max(1) as f64 * 10_000.0,
            events as f64 / secs,
            cpu / secs * 100.0
        ),
    ));

    ramp(bin, state, median(&mut en.clone()), rep, &mut mem)?;
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    rep.push(Row::info(
        "agent RSS idle, 1 s after start (VmRSS)",
        mib(mem.idle_rss),
    ));
    rep.push(Row::info(
        "agent peak RSS during start-up (VmHWM)",
        mib(mem.start_hwm),
    ));
    rep.push(Row::goal(
        "agent peak RSS under load (VmHWM after reset)",
        mib(mem.load_hwm),
        "< 40 MiB",
        mem.load_hwm < 40 * 1024,
    ));
    micro::run(rep)
}

/// Paced exec storms at fractions of the machine's max rate, then a fork
/// storm (more events per second than execs can make): events/s and drops.
fn ramp(
    bin: &std::path::Path,
    state: &std::path::Path,
    max_rate: f64,
    rep: &mut Report,
    mem: &mut Mem,
) -> Result<()> {
    eprintln!("bench: event-rate ramp");
    wait_for_no_other_agents()?;
    let a = Agent::start(bin, &state.join("ramp"), &[])?;
    std::thread::sleep(Duration::from_secs(1));
    mem.after_start(a.pid())?;
    let mut best: Option<f64> = None;
    let mut steps = Vec::new();
    for frac in [0.25, 0.5, 0.75, 1.0] {
        let rate = (frac < 1.0).then_some(max_rate * frac);
        let n = ((max_rate * frac * 3.0) as u64).max(1000);
        let (s, run) = measured(&a, || exec_storm(n, WORKERS, rate, "r"), as_storm)?;
        let ev_s = run.events as f64 / run.secs;
        let missing = s.spawned - run.latency.matched;
        if run.lost == 0 && missing == 0 {
            best = Some(best.map_or(ev_s, |b: f64| b.max(ev_s)));
        }
        let k = &run.latency.kernel_to_stdout;
        steps.push(format!(
            "exec {:.0}/s: {ev_s:.0} events/s, lost {} (+{missing} execs without record), kernel->stdout p50 {:.2} ms p99 {:.2} ms, CPU {:.3} s/10k events",
            s.per_sec(),
            run.lost,
            pct(k, 50.0) as f64 / 1e6,
            pct(k, 99.0) as f64 / 1e6,
            run.cpu_s / run.events.max(1) as f64 * 10_000.0,
        ));
    }
    // Past the exec rate the machine can make: forks that exit at once.
    for workers in [1, WORKERS, 2 * WORKERS] {
        let ((n, wall), run) = measured(&a, || fork_storm(40_000, workers), no_storm)?;
        let ev_s = run.events as f64 / run.secs;
        if run.lost == 0 {
            best = Some(best.map_or(ev_s, |b: f64| b.max(ev_s)));
        }
        steps.push(format!(
            "fork storm ({workers} procs) {:.0} forks/s: {ev_s:.0} events/s, lost {} ({:.2}% of events), CPU {:.3} s/10k events",
            n as f64 / wall.as_secs_f64(),
            run.lost,
            run.lost as f64 / (run.events + run.lost).max(1) as f64 * 100.0,
            run.cpu_s / run.events.max(1) as f64 * 10_000.0,
        ));
    }
    let lost_records = lost_cumulative(&a);
    let u = proc_usage(a.pid())?;
    mem.load_hwm = mem.load_hwm.max(u.hwm_kib);
    let mib = |k: u64| k as f64 / 1024.0;
    rep.push(Row::info(
        "agent VmRSS after the ramp: anon / file / shmem",
        format!(
            "{:.1} / {:.1} / {:.1} MiB",
            mib(u.anon_kib),
            mib(u.file_kib),
            mib(u.shmem_kib)
        ),
    ));
    let others = other_agents(Some(a.pid()));
    a.stop().context("stopping the ramp agent")?;
    if !others.is_empty() {
        rep.push(Row::info(
            "WARNING: other debugmon agents ran during the ramp",
            format!("{others:?}: its figures are disturbed"),
        ));
    }
    for s in steps {
        rep.push(Row::info("  ramp step", s));
    }
    rep.push(Row::info(
        "events/s sustained with nothing lost",
        best.map_or_else(
            || "none of the steps was loss-free".into(),
            |b| format!("{b:.0}"),
        ),
    ));
    rep.push(Row::info(
        "kernel drops the agent reported in `lost` records (ramp, cumulative)",
        lost_records.to_string(),
    ));
    small_ring(bin, state, rep)
}

/// The machine cannot make events faster than the 8 MiB ring absorbs, so
/// the loss path is shown with the smallest ring: the 2-process fork storm
/// against `--ring-mib 1`, drops as the agent's `lost` records report them.
fn small_ring(bin: &std::path::Path, state: &std::path::Path, rep: &mut Report) -> Result<()> {
    wait_for_no_other_agents()?;
    let a = Agent::start(bin, &state.join("ring1"), &["--ring-mib", "1"])?;
    let ((n, wall), run) = measured(&a, || fork_storm(40_000, WORKERS), no_storm)?;
    let from_records = lost_cumulative(&a);
    a.stop().context("stopping the small-ring agent")?;
    rep.push(Row::info(
        "loss path: fork storm (2 procs) with --ring-mib 1",
        format!(
            "{:.0} forks/s, {:.0} events/s handled, lost {} per /metrics, {} per `lost` records ({:.2}% of events)",
            n as f64 / wall.as_secs_f64(),
            run.events as f64 / run.secs,
            run.lost,
            from_records,
            run.lost as f64 / (run.events + run.lost).max(1) as f64 * 100.0
        ),
    ));
    Ok(())
}

/// `xtask bench-storm`: one flat-out exec storm, nothing else.
pub(crate) fn storm_only(execs: u64, workers: usize) -> Result<()> {
    let s = exec_storm(execs, workers, None, "s")?;
    println!(
        "{:.0} execs/s ({} in {:.2} s)",
        s.per_sec(),
        s.spawned,
        s.wall.as_secs_f64()
    );
    Ok(())
}

/// Where the results land.
pub(crate) fn results_path() -> PathBuf {
    root().join("bench/results.json")
}
