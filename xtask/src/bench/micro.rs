//! The criterion micro-benchmarks of the agent crate (policy, seal,
//! pipeline), run with a short measurement time; their estimates and the
//! policy bench's per-evaluation percentiles go into the report.

use std::process::Stdio;

use anyhow::{Context as _, Result, bail};

use super::report::{Report, Row};
use crate::shell::cmd;

const BENCH_ARGS: &[&str] = &[
    "bench", "-p", "agent", "--bench", "policy", "--bench", "seal", "--bench", "pipeline",
];

/// Compiles the benches up front so compiling never overlaps a measurement.
pub(crate) fn build() -> Result<()> {
    crate::shell::sh(cmd("cargo").args(BENCH_ARGS).arg("--no-run"))
}

/// Criterion's point estimate from `time:   [low mid high]`, as printed.
fn estimate(line: &str) -> Option<String> {
    let inner = line.split_once('[')?.1.split_once(']')?.0;
    let parts: Vec<&str> = inner.split_whitespace().collect();
    (parts.len() == 6).then(|| format!("{} {}", parts[2], parts[3]))
}

/// `12.3 µs` -> nanoseconds.
fn to_ns(s: &str) -> Option<f64> {
    let (v, unit) = s.split_once(' ')?;
    let v: f64 = v.parse().ok()?;
    let k = match unit {
        "ps" => 1e-3,
        "ns" => 1.0,
        "µs" | "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    Some(v * k)
}

pub(crate) fn run(rep: &mut Report) -> Result<()> {
    eprintln!("bench: criterion micro-benchmarks");
    let out = cmd("cargo")
        .args(BENCH_ARGS)
        .args(["--", "--warm-up-time", "0.5", "--measurement-time", "1"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo bench")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("cargo bench failed:\n{text}");
    }
    let mut name = String::new();
    let mut policy_p99_max: Option<u64> = None;
    for line in text.lines() {
        if let Some((label, rest)) = line.split_once(": p50 ") {
            // The policy bench's own percentiles.
            let p99 = rest
                .split_once("p99 ")
                .and_then(|(_, r)| r.split_once(' '))
                .and_then(|(v, _)| v.parse::<u64>().ok());
            let p50 = rest.split_once(' ').map_or("", |(v, _)| v);
            rep.push(Row::info(
                &format!("  policy {label}"),
                format!("p50 {p50} ns, p99 {} ns", p99.unwrap_or(0)),
            ));
            if label.starts_with("default+1000/") {
                policy_p99_max = policy_p99_max.max(p99);
            }
            continue;
        }
        if line.contains("time:") {
            let head = line.split("time:").next().unwrap_or("").trim();
            if !head.is_empty() {
                name = head.to_owned();
            }
            if let Some(est) = estimate(line) {
                let per = to_ns(&est)
                    .map(|ns| format!(" ({:.0}/s)", 1e9 / ns))
                    .unwrap_or_default();
                rep.push(Row::info(
                    &format!("  criterion {name}"),
                    format!("{est}{per}"),
                ));
            }
        } else if !line.starts_with(' ') && !line.trim().is_empty() {
            name = line.trim().to_owned();
        }
    }
    let p99 = policy_p99_max.context("the policy bench printed no percentiles")?;
    rep.push(Row::goal(
        "policy eval p99 at ~1,000 rules (worst event, timer included)",
        format!("{p99} ns"),
        "< 1,000 ns",
        p99 < 1000,
    ));
    Ok(())
}
