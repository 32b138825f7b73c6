//! The bench's table and `bench/results.json`: one row per figure, with
//! the goal it is held to (if any) and whether this run met it, plus the
//! facts of the machine it ran on.

use std::{process::Command, time::Duration};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

pub(crate) struct Row {
    name: String,
    value: String,
    goal: Option<String>,
    met: Option<bool>,
}

impl Row {
    pub(crate) fn info(name: &str, value: String) -> Self {
        Self {
            name: name.to_owned(),
            value,
            goal: None,
            met: None,
        }
    }

    pub(crate) fn goal(name: &str, value: String, goal: &str, met: bool) -> Self {
        Self {
            name: name.to_owned(),
            value,
            goal: Some(goal.to_owned()),
            met: Some(met),
        }
    }
}

pub(crate) struct Report {
    rows: Vec<Row>,
    /// /proc/loadavg when the bench began: how busy the machine already was.
    load_before: String,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn sh_out(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    json!({
        "date": sh_out("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "nproc": sh_out("nproc", &[]),
        "kernel": sh_out("uname", &["-r"]),
        "cpu": cpu,
        "commit": sh_out("git", &["rev-parse", "--short", "HEAD"]),
    })
}

impl Report {
    pub(crate) fn new() -> Self {
        Self {
            rows: Vec::new(),
            load_before: loadavg(),
        }
    }

    pub(crate) fn push(&mut self, r: Row) {
        eprintln!("bench: {}: {}", r.name, r.value);
        self.rows.push(r);
    }

    /// Baseline, debugmon, auditd and syscall-tracing-alone throughput of
    /// one workload, one value per interleaved round (the last two with
    /// why they were not measured, if so). The ratio is the median of the per-round
    /// ratios: each pairs runs seconds apart, so slow drift (other jobs on
    /// the machine) cancels better than in a ratio of medians.
    /// One workload's rows: no monitor, debugmon (against `goal` when it
    /// is above 0), each peer, and whether debugmon came out ahead of every
    /// peer that ran.
    pub(crate) fn overhead(
        &mut self,
        what: &str,
        none: &[f64],
        dm: &[f64],
        peers: &[Peer<'_>],
        goal: f64,
    ) {
        let med = |v: &[f64]| super::median(&mut v.to_vec());
        let ratios = |v: &[f64]| -> (f64, f64, f64) {
            let mut r: Vec<f64> = v.iter().zip(none).map(|(x, n)| x / n).collect();
            let m = super::median(&mut r);
            (
                m,
                r.first().copied().unwrap_or(f64::NAN),
                r.last().copied().unwrap_or(f64::NAN),
            )
        };
        let fmt = |v: &[f64]| {
            let (m, lo, hi) = ratios(v);
            format!(
                "{:.0} ({:.1}% of no monitor; rounds {:.1}-{:.1}%)",
                med(v),
                m * 100.0,
                lo * 100.0,
                hi * 100.0
            )
        };
        let each = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.push(Row::info(
            &format!("{what}, no monitor"),
            format!("{:.0} (rounds: {})", med(none), each(none)),
        ));
        let ours = ratios(dm).0;
        if goal > 0.0 {
            self.push(Row::goal(
                &format!("{what}, debugmon"),
                fmt(dm),
                &format!(">= {:.0}% of no monitor", goal * 100.0),
                ours >= goal,
            ));
        } else {
            self.push(Row::info(&format!("{what}, debugmon"), fmt(dm)));
        }
        let mut behind = Vec::new();
        let mut compared = Vec::new();
        for p in peers {
            let v = match p.available {
                Ok(()) => {
                    if p.compete {
                        compared.push(p.label);
                        if ratios(p.values).0 >= ours {
                            behind.push(p.label);
                        }
                    }
                    fmt(p.values)
                }
                Err(e) => format!("not measured: {e}"),
            };
            self.push(Row::info(&format!("{what}, {}", p.label), v));
        }
        if goal > 0.0 && !compared.is_empty() {
            self.push(Row::goal(
                &format!("{what}, debugmon ahead of {}", compared.join(" and ")),
                if behind.is_empty() {
                    "ahead of every one".to_owned()
                } else {
                    format!("behind {}", behind.join(", "))
                },
                "ahead of each",
                behind.is_empty(),
            ));
        }
    }

    pub(crate) fn latency(&mut self, what: &str, sorted_ns: &[u64], goal: bool) {
        let ms = |p: f64| super::pct(sorted_ns, p) as f64 / 1e6;
        let v = format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
            ms(50.0),
            ms(99.0),
            ms(100.0),
            sorted_ns.len()
        );
        if goal {
            self.push(Row::goal(
                what,
                v,
                "p99 < 2 ms",
                !sorted_ns.is_empty() && ms(99.0) < 2.0,
            ));
        } else {
            self.push(Row::info(what, v));
        }
    }

    /// Prints the table and writes bench/results.json.
    pub(crate) fn finish(self, took: Duration) -> Result<()> {
        let mut m = machine();
        m["loadavg_before"] = json!(self.load_before);
        m["loadavg_after"] = json!(loadavg());
        println!(
            "\ndebugmon bench, {} ({} CPUs, kernel {}, {})",
            m["date"].as_str().unwrap_or(""),
            m["nproc"].as_str().unwrap_or(""),
            m["kernel"].as_str().unwrap_or(""),
            m["cpu"].as_str().unwrap_or("")
        );
        println!("| measure | value | goal | met |\n|---|---|---|---|");
        for r in &self.rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            println!(
                "| {} | {} | {} | {met} |",
                r.name,
                r.value,
                r.goal.as_deref().unwrap_or("")
            );
        }
        println!(
            "\n(bench took {:.0} s; load average before {}, after {})",
            took.as_secs_f64(),
            self.load_before,
            m["loadavg_after"].as_str().unwrap_or("")
        );
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| json!({"measure": r.name.trim(), "value": r.value, "goal": r.goal, "met": r.met}))
            .collect();
        let doc = json!({"machine": m, "seconds": took.as_secs_f64(), "results": rows});
        let path = super::results_path();
        std::fs::create_dir_all(path.parent().context("results dir")?)?;
        std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
        Ok(())
    }
}

/// A monitor measured beside debugmon in the same rounds.
pub(crate) struct Peer<'a> {
    pub(crate) label: &'a str,
    pub(crate) values: &'a [f64],
    /// `Err(why)` when this host cannot run it.
    pub(crate) available: &'a Result<(), String>,
    /// A monitor debugmon should beat (not a baseline like the floor).
    pub(crate) compete: bool,
}
