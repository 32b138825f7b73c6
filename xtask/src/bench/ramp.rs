//! The event-rate ramp: paced exec storms up to the machine's max rate,
//! fork storms past it, the loss path shown with the smallest ring, and
//! what a longer `--read-interval-ms` trades.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};

use super::{
    WORKERS,
    agent::{Agent, proc_usage},
    measure::{Mem, as_storm, fresh_agent_storm, lost_cumulative, measured, no_storm, pct},
    other_agents,
    report::{Report, Row},
    storm::{exec_storm, fork_storm},
    wait_for_no_other_agents,
};

/// Paced exec storms at fractions of the machine's max rate, then a fork
/// storm (more events per second than execs can make): events/s and drops.
pub(crate) fn ramp(
    bin: &Path,
    state: &Path,
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
    // Agent CPU per event (us) at each exec step, and in each fork storm.
    let mut exec_us = Vec::new();
    let mut fork_us = Vec::new();
    for frac in [0.25, 0.5, 0.75, 1.0] {
        let rate = (frac < 1.0).then_some(max_rate * frac);
        let n = ((max_rate * frac * 3.0) as u64).max(1000);
        let (s, run) = measured(&a, || exec_storm(n, WORKERS, rate, "r"), as_storm)?;
        let ev_s = run.events as f64 / run.secs;
        let missing = s.spawned - run.latency.matched;
        if run.lost == 0 && missing == 0 {
            best = Some(best.map_or(ev_s, |b: f64| b.max(ev_s)));
        }
        exec_us.push(run.cpu_s / run.events.max(1) as f64 * 1e6);
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
        fork_us.push(run.cpu_s / run.events.max(1) as f64 * 1e6);
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
    let worst = fork_us.iter().copied().fold(0.0, f64::max);
    rep.push(Row::goal(
        "agent CPU per fork or exit event (fork storms of 1, 2, 4 procs; the worst)",
        format!(
            "{worst:.2} us (each: {})",
            fork_us
                .iter()
                .map(|u| format!("{u:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "<= 3 us",
        worst > 0.0 && worst <= 3.0,
    ));
    let (lo, hi) = exec_us
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), &u| (l.min(u), h.max(u)));
    rep.push(Row::info(
        "agent CPU per event over the exec ramp (25/50/75/100 % of max): least / most",
        format!("{lo:.2} / {hi:.2} us (flat when the two are close)"),
    ));
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
    small_ring(bin, state, rep)?;
    read_interval_trade(bin, state, rep)
}

/// Read intervals compared, in ms: a short and a long one (the debugmon
/// rounds run the default, 2).
const READ_INTERVALS: [u64; 2] = [1, 8];
/// Rounds of flat-out exec storms per interval, alternating.
const READ_INTERVAL_ROUNDS: usize = 2;

/// Agent CPU per exec and record latency at a short read interval and a
/// long one, in alternating flat-out exec storms: the trade an operator
/// makes with `agent.read_interval_ms`.
fn read_interval_trade(bin: &Path, state: &Path, rep: &mut Report) -> Result<()> {
    let mut us = vec![Vec::new(); READ_INTERVALS.len()];
    let mut p99 = vec![Vec::new(); READ_INTERVALS.len()];
    for round in 0..READ_INTERVAL_ROUNDS {
        for (i, ms) in READ_INTERVALS.iter().enumerate() {
            let dir = state.join(format!("read-interval-{ms}-{round}"));
            let args = ["--read-interval-ms", &ms.to_string()];
            let (_, run) = fresh_agent_storm(bin, &dir, &args, 5_000, "ri")?;
            us[i].push(run.us_per_exec());
            p99[i].push(run.kernel_to_stdout_ms(99.0));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    for (i, ms) in READ_INTERVALS.iter().enumerate() {
        rep.push(Row::info(
            &format!("--read-interval-ms {ms}: agent CPU per exec, kernel->stdout p99 (flat-out exec storms, mean of {READ_INTERVAL_ROUNDS})"),
            format!("{:.1} us, {:.2} ms", mean(&us[i]), mean(&p99[i])),
        ));
    }
    Ok(())
}

/// The machine cannot make events faster than the default ring absorbs, so
/// the loss path is shown with the smallest ring: the 2-process fork storm
/// against `--ring-mib 1`, drops as the agent's `lost` records report them.
fn small_ring(bin: &Path, state: &Path, rep: &mut Report) -> Result<()> {
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
