//! Measuring one workload with the agent watching: events, drops and
//! CPU as deltas of /metrics and /proc, exec -> stdout latency matched by
//! argv nonce, agent memory, and the small statistics the report needs;
//! and one flat-out exec storm against a fresh agent.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};

use super::{
    STRACE_BYTES, WORKERS,
    agent::{Agent, bpf_run_ns, proc_usage},
    storm::{StormResult, exec_storm, strace_loop},
    wait_for_no_other_agents,
};

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

pub(crate) fn latency(agent: &Agent, storm: &StormResult) -> Latency {
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
pub(crate) fn lost_cumulative(agent: &Agent) -> u64 {
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
pub(crate) fn strace_best() -> Result<f64> {
    let mut best: f64 = 0.0;
    for _ in 0..3 {
        best = best.max(strace_loop(STRACE_BYTES)?.1);
    }
    Ok(best)
}

/// Agent memory: RSS and peak right after start, then the peak under load
/// alone (the start peak is reset through /proc/PID/clear_refs).
#[derive(Default)]
pub(crate) struct Mem {
    pub idle_rss: u64,
    pub start_hwm: u64,
    pub load_hwm: u64,
}

impl Mem {
    pub(crate) fn after_start(&mut self, pid: u32) -> Result<()> {
        let u = proc_usage(pid)?;
        self.idle_rss = self.idle_rss.max(u.rss_kib);
        self.start_hwm = self.start_hwm.max(u.hwm_kib);
        // "5" resets VmHWM to the current RSS (proc(5), since Linux 4.0).
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("resetting VmHWM")?;
        Ok(())
    }

    pub(crate) fn after_load(&mut self, pid: u32) -> Result<()> {
        self.load_hwm = self.load_hwm.max(proc_usage(pid)?.hwm_kib);
        Ok(())
    }
}

/// What one measured debugmon storm showed besides its throughput.
pub(crate) struct AgentRun {
    pub events: u64,
    pub lost: u64,
    /// Reads of the ring buffer.
    pub reads: u64,
    pub cpu_s: f64,
    /// Run time of the agent's BPF programs (in the traced processes).
    pub bpf_s: f64,
    pub secs: f64,
    pub latency: Latency,
    pub spawned: u64,
}

impl AgentRun {
    /// Agent CPU per exec the storm spawned, in µs.
    pub(crate) fn us_per_exec(&self) -> f64 {
        self.cpu_s / self.spawned.max(1) as f64 * 1e6
    }

    /// Percentile `p` of kernel event → stdout, in ms.
    pub(crate) fn kernel_to_stdout_ms(&self, p: f64) -> f64 {
        pct(&self.latency.kernel_to_stdout, p) as f64 / 1e6
    }
}

/// A flat-out storm of `execs` against a fresh agent (`bin`, `args` after
/// `run`, state in `dir`), started once no other agent runs and stopped
/// after.
pub(crate) fn fresh_agent_storm(
    bin: &Path,
    dir: &Path,
    args: &[&str],
    execs: u64,
    tag: &str,
) -> Result<(StormResult, AgentRun)> {
    wait_for_no_other_agents()?;
    let a = Agent::start(bin, dir, args)?;
    std::thread::sleep(Duration::from_secs(1));
    let out = measured(&a, || exec_storm(execs, WORKERS, None, tag), as_storm)?;
    a.stop().context("stopping the agent")?;
    Ok(out)
}

pub(crate) fn as_storm(s: &StormResult) -> Option<&StormResult> {
    Some(s)
}

pub(crate) fn no_storm<T>(_: &T) -> Option<&StormResult> {
    None
}

/// Runs `work` with the agent watching; events, drops and CPU are deltas.
pub(crate) fn measured<T>(
    agent: &Agent,
    work: impl FnOnce() -> Result<T>,
    storm_of: impl Fn(&T) -> Option<&StormResult>,
) -> Result<(T, AgentRun)> {
    agent.clear();
    let s0 = agent.scrape()?;
    let u0 = proc_usage(agent.pid())?;
    let b0 = bpf_run_ns(agent.pid());
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
    let b1 = bpf_run_ns(agent.pid());
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
        events: last.events - s0.events,
        lost: last.lost - s0.lost,
        reads: last.reads - s0.reads,
        cpu_s: u1.cpu_s - u0.cpu_s,
        bpf_s: b1.saturating_sub(b0) as f64 / 1e9,
        secs,
        latency: lat,
        spawned,
    };
    Ok((out, run))
}
