//! `xtask bench-ab` (hidden): two agent builds, or one build with two sets
//! of flags, against each other in alternating flat-out exec storms,
//! measured as the bench measures its debugmon rounds: agent CPU per exec,
//! kernel → stdout p50 and p99, execs per ring read, execs/s, drops. For
//! checking one change before it lands; not part of `cargo xtask bench`.

use std::path::PathBuf;

use anyhow::{Result, bail};

use super::measure::{fresh_agent_storm, median};

/// One side: a binary and the flags after `run`.
pub(crate) struct Side {
    pub bin: PathBuf,
    pub args: Vec<String>,
}

#[derive(Default)]
struct Figures {
    us_per_exec: Vec<f64>,
    execs_per_s: Vec<f64>,
    p50_ms: Vec<f64>,
    p99_ms: Vec<f64>,
    execs_per_read: Vec<f64>,
    lost: u64,
}

pub(crate) fn ab(sides: [Side; 2], rounds: usize, execs: u64) -> Result<()> {
    if !crate::shell::is_root() {
        bail!("bench-ab loads eBPF programs: run it as root");
    }
    for s in &sides {
        if !s.bin.is_file() {
            bail!("no agent binary at {}", s.bin.display());
        }
    }
    let state = std::env::temp_dir().join(format!("debugmon-ab-{}", std::process::id()));
    let _bpf_stats = super::agent::BpfStats::disable();
    let mut figs = [Figures::default(), Figures::default()];
    let res = (|| {
        for round in 0..rounds {
            // Each side goes first in every other round.
            for k in 0..2 {
                let i = (round + k) % 2;
                let side = &sides[i];
                let dir = state.join(format!("{round}-{i}"));
                let args: Vec<&str> = side.args.iter().map(String::as_str).collect();
                let (s, run) = fresh_agent_storm(&side.bin, &dir, &args, execs, "ab")?;
                let f = &mut figs[i];
                let us = run.us_per_exec();
                let p50 = run.kernel_to_stdout_ms(50.0);
                let p99 = run.kernel_to_stdout_ms(99.0);
                let per_read = s.spawned as f64 / run.reads.max(1) as f64;
                println!(
                    "round {round} {}: {us:.1} us/exec, {:.0} execs/s, p50 {p50:.2} ms, p99 {p99:.2} ms, {per_read:.1} execs/read, lost {}",
                    ["A", "B"][i],
                    s.per_sec(),
                    run.lost
                );
                f.us_per_exec.push(us);
                f.execs_per_s.push(s.per_sec());
                f.p50_ms.push(p50);
                f.p99_ms.push(p99);
                f.execs_per_read.push(per_read);
                f.lost += run.lost;
            }
        }
        Ok::<_, anyhow::Error>(())
    })();
    let _ = std::fs::remove_dir_all(&state);
    res?;
    for (i, f) in figs.iter_mut().enumerate() {
        println!(
            "{} (median of {rounds}): {:.1} us/exec, {:.0} execs/s, p50 {:.2} ms, p99 {:.2} ms, {:.1} execs/read, lost {}",
            ["A", "B"][i],
            median(&mut f.us_per_exec),
            median(&mut f.execs_per_s),
            median(&mut f.p50_ms),
            median(&mut f.p99_ms),
            median(&mut f.execs_per_read),
            f.lost
        );
    }
    Ok(())
}
