//! `cargo xtask bench`: what debugmon costs a host, measured against
//! baselines run in the same invocation (absolute times drift on a shared
//! 2-core machine; ratios of interleaved runs hold). Exec and ptrace
//! overhead against no monitor, auditd, and the kernel's syscall-tracing
//! path alone (the floor on a kernel without trampolines), the event rate the pipeline
//! sustains without loss, exec -> stdout latency, agent CPU and memory, and
//! the criterion micro-benchmarks. Prints a table, writes bench/results.json.

pub(crate) mod ab;
mod agent;
mod audit;
mod bpftrace;
mod floor;
mod measure;
mod micro;
mod ramp;
mod report;
mod storm;
mod wake;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
pub(crate) use storm::fork_child;

use self::{
    agent::Agent,
    measure::{AgentRun, Mem, as_storm, measured, median, pct, strace_best},
    report::{Peer, Report, Row},
    storm::exec_storm,
};
use crate::shell::{cmd, is_root, root, sh};

/// Execs per storm run, over [`WORKERS`] spawning threads.
const EXECS: u64 = 10_000;
pub(crate) const WORKERS: usize = 2;
/// Interleaved rounds of (none, debugmon, auditd, syscall tracing alone,
/// bpftrace);
/// medians are taken over them.
const ROUNDS: usize = 5;
/// Bytes `dd` copies one at a time under strace: two syscalls each.
pub(crate) const STRACE_BYTES: u64 = 20_000;
/// Exec throughput goal with debugmon, as a share of no monitor, on this
/// machine (the kernel refuses BPF trampolines here; see BENCHMARKS.md).
const GOAL: f64 = 0.96;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    None,
    Debugmon,
    Auditd,
    /// The kernel's syscall-tracing path on, nothing else (see [`floor`]).
    SyscallTracing,
    /// bpftrace printing every exec (see [`bpftrace`]).
    Bpftrace,
}

pub(crate) fn bench() -> Result<()> {
    if !is_root() {
        bail!("the bench loads eBPF programs and drives auditd: run it as root");
    }
    let started = std::time::Instant::now();
    crate::prereq::ensure_all()?;
    floor::reset_leftover();
    sh(cmd("cargo").args(["build", "--release", "-p", "agent"]))?;
    micro::build()?;
    wait_for_no_other_agents()?;
    let bin = root().join("target/release/debugmon");
    let state = std::env::temp_dir().join(format!("debugmon-bench-{}", std::process::id()));
    let _bpf_stats = agent::BpfStats::disable();
    let mut rep = Report::new();
    // Before any agent runs: the host's own price of a wake-up.
    rep.push(Row::info(WAKE_ROW, wake::measure()?.to_string()));
    let res = run_all(&bin, &state, &mut rep);
    let _ = std::fs::remove_dir_all(&state);
    res?;
    rep.finish(started.elapsed())
}

/// Pids of running `debugmon` processes other than the bench's own agent.
pub(crate) fn other_agents(own: Option<u32>) -> Vec<u32> {
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
pub(crate) fn wait_for_no_other_agents() -> Result<()> {
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
    execs: [Option<f64>; MODES.len()],
    straces: [Option<f64>; MODES.len()],
    run: AgentRun,
    /// The BPF programs' run time and the execs of the round's cost storm.
    bpf: (f64, u64),
}

const MODES: [Mode; 5] = [
    Mode::None,
    Mode::Debugmon,
    Mode::Auditd,
    Mode::SyscallTracing,
    Mode::Bpftrace,
];

/// Which optional baselines this host can run.
#[derive(Clone, Copy)]
struct Can {
    audit: bool,
    floor: bool,
    bpftrace: bool,
}

/// One interleaved round; `Ok(Err(why))` when another agent disturbed it.
fn one_round(
    bin: &std::path::Path,
    state: &std::path::Path,
    round: usize,
    can: Can,
    mem: &mut Mem,
) -> Result<std::result::Result<RoundOut, String>> {
    let mut execs = [None; MODES.len()];
    let mut straces = [None; MODES.len()];
    let mut run = None;
    let mut bpf = (0.0, 0);
    // A baseline mode: the two workloads with nothing of ours running.
    let plain = |tag: &str| -> Result<(Option<f64>, Option<f64>)> {
        let storm = exec_storm(EXECS, WORKERS, None, tag)?.per_sec();
        Ok((Some(storm), Some(strace_best()?)))
    };
    // Rotated each round, so no mode always follows the same one (an
    // auditd teardown, an agent's exit) and order effects average out.
    for k in 0..MODES.len() {
        let i = (round + k) % MODES.len();
        let mode = MODES[i];
        eprintln!("bench: round {}, {mode:?}", round + 1);
        match mode {
            Mode::None => (execs[i], straces[i]) = plain("n")?,
            Mode::Debugmon => {
                let a = Agent::start(bin, &state.join(format!("r{round}")), &[])?;
                std::thread::sleep(Duration::from_secs(1));
                mem.after_start(a.pid())?;
                let (s, r) = measured(&a, || exec_storm(EXECS, WORKERS, None, "d"), as_storm)?;
                execs[i] = Some(s.per_sec());
                straces[i] = Some(strace_best()?);
                mem.after_load(a.pid())?;
                run = Some(r);
                // The kernel counts BPF run time only while its stats are
                // on, which costs two clock reads per program run (every
                // run of every BPF program on the host, bpftrace's too):
                // a storm of its own measures it, outside the throughput
                // figures, as production hosts run with the stats off.
                let stats = agent::BpfStats::enable();
                let (_, cost) = measured(&a, || exec_storm(EXECS, WORKERS, None, "c"), as_storm)?;
                drop(stats);
                bpf = (cost.bpf_s, cost.spawned);
                if let Err(e) = a.stop() {
                    return Ok(Err(format!("round {}: {e:#}", round + 1)));
                }
            }
            Mode::Auditd => {
                if can.audit {
                    let _a = audit::Auditd::start()?;
                    (execs[i], straces[i]) = plain("a")?;
                }
            }
            Mode::SyscallTracing => {
                if can.floor {
                    let _t = floor::SyscallTracing::enable()?;
                    (execs[i], straces[i]) = plain("t")?;
                }
            }
            Mode::Bpftrace => {
                if can.bpftrace {
                    let b = bpftrace::Bpftrace::start()?;
                    let before = b.printed();
                    (execs[i], straces[i]) = plain("b")?;
                    // Its output is its record: an exec it did not print
                    // would make it look cheaper than it is.
                    let printed = b.printed() - before;
                    if printed < EXECS {
                        eprintln!("bench: bpftrace printed {printed} lines for {EXECS} execs");
                    }
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
        bpf,
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
    let floor_ok = floor::SyscallTracing::check().map_err(|e| format!("{e:#}"));
    let bpftrace_ok = bpftrace::Bpftrace::start()
        .map(drop)
        .map_err(|e| format!("{e:#}"));
    let can = Can {
        audit: audit_ok.is_ok(),
        floor: floor_ok.is_ok(),
        bpftrace: bpftrace_ok.is_ok(),
    };
    let mut execs: [Vec<f64>; MODES.len()] = Default::default();
    let mut straces: [Vec<f64>; MODES.len()] = Default::default();
    let mut runs = Vec::new();
    let mut bpf_cost = (0.0, 0);
    let mut mem = Mem::default();
    let mut discarded = Vec::new();
    let mut attempt = 0;
    while runs.len() < ROUNDS {
        if attempt >= ROUNDS + 4 {
            bail!("too many rounds disturbed by other agents: {discarded:?}");
        }
        wait_for_no_other_agents()?;
        let r = one_round(bin, state, attempt, can, &mut mem)?;
        attempt += 1;
        match r {
            Ok(r) => {
                for i in 0..MODES.len() {
                    execs[i].extend(r.execs[i]);
                    straces[i].extend(r.straces[i]);
                }
                runs.push(r.run);
                bpf_cost = (bpf_cost.0 + r.bpf.0, bpf_cost.1 + r.bpf.1);
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
    let [en, ed, ea, et, eb] = execs;
    let [sn, sd, sa, st, sb] = straces;
    let ok = [&audit_ok, &bpftrace_ok, &floor_ok];
    rep.overhead(
        "exec storm (execs/s)",
        &en,
        &ed,
        &peers([&ea, &eb, &et], ok),
        GOAL,
    );
    rep.overhead(
        "strace -f syscall loop (syscalls/s)",
        &sn,
        &sd,
        &peers([&sa, &sb, &st], ok),
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
    let execs: u64 = runs.iter().map(|r| r.spawned).sum();
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
    let reads: u64 = runs.iter().map(|r| r.reads).sum();
    rep.push(Row::info(
        "ring reads at max rate (each is two wake-ups of the agent; see the host row)",
        format!(
            "{reads} reads = {:.0}/s; {:.1} execs and {:.1} events per read",
            reads as f64 / secs,
            execs as f64 / reads.max(1) as f64,
            events as f64 / reads.max(1) as f64
        ),
    ));
    let (cpu_us, bpf_us) = (
        cpu / execs.max(1) as f64 * 1e6,
        bpf_cost.0 / bpf_cost.1.max(1) as f64 * 1e6,
    );
    rep.push(Row::goal(
        "per exec at max rate: agent CPU (utime+stime; fork, exec and exit events)",
        format!("{cpu_us:.1} us ({execs} execs)"),
        "<= 8 us",
        cpu_us <= 8.0,
    ));
    rep.push(Row::goal(
        "per exec at max rate: BPF programs (run_time_ns, in the traced processes; own storms with bpf_stats on)",
        format!("{bpf_us:.1} us ({} execs)", bpf_cost.1),
        "<= 5 us",
        bpf_us <= 5.0,
    ));

    ramp::ramp(bin, state, median(&mut en.clone()), rep, &mut mem)?;
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

/// The monitors beside debugmon, in the order auditd, bpftrace, floor.
fn peers<'a>(values: [&'a [f64]; 3], ok: [&'a Result<(), String>; 3]) -> [Peer<'a>; 3] {
    let [a, b, t] = values;
    [
        Peer {
            label: "auditd execve rule",
            values: a,
            available: ok[0],
            compete: true,
        },
        Peer {
            label: "bpftrace printing each exec",
            values: b,
            available: ok[1],
            compete: true,
        },
        Peer {
            label: "kernel syscall tracing alone (no BPF, no agent: the floor)",
            values: t,
            available: ok[2],
            compete: false,
        },
    ]
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

const WAKE_ROW: &str = "host: CPU per wake-up of a sleeping thread (1 ms timer / hand-off to another thread; a null syscall for scale)";

/// `xtask bench-wake`: the host's wake-up costs alone.
pub(crate) fn wake_only() -> Result<()> {
    println!("{WAKE_ROW}: {}", wake::measure()?);
    Ok(())
}

/// Where the results land.
pub(crate) fn results_path() -> PathBuf {
    root().join("bench/results.json")
}
