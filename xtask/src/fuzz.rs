//! `cargo xtask fuzz [--secs N] [--no-asan] [TARGET...]`: builds the fuzz
//! targets in `fuzz/` once (cargo-fuzz: nightly, libFuzzer, debug
//! assertions so an overflow is a finding too, AddressSanitizer unless
//! told otherwise), then runs each for N seconds, two at a time, starting
//! from its seed corpus in `fuzz/corpus/TARGET`. Inputs libFuzzer finds go
//! to `fuzz/target/corpus/TARGET` (never into the checked-in seeds); a
//! crash leaves its input in `fuzz/target/artifacts/TARGET/` and fails the
//! task.
//!
//! `cargo xtask test` runs every target for [`TEST_SECS`] without the
//! sanitizer: on these 2-core machines its build took 430 s against 280 s
//! plain, and it ran 4.6–6 times fewer inputs per second (decode 47k/s
//! against 218k/s, policy 1.3k/s against 7.5k/s). The code the targets
//! reach is safe Rust but for one bounds-checked read in the decoder, so
//! in a short smoke run the extra inputs are worth more; the long runs of
//! `cargo xtask fuzz` keep the sanitizer for the unsafe code of
//! dependencies (the YAML parser is translated C).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::shell::{cmd, root, sh, show};

/// Every fuzz target (a `[[bin]]` of fuzz/Cargo.toml).
pub(crate) const TARGETS: &[&str] = &[
    "decode",
    "policy",
    "config",
    "control",
    "canonical",
    "verify",
];
/// Seconds per target in `cargo xtask test`.
/// 20 s: the test command is bound by the CPU of two cores, and the
/// rounds of two targets at a time are the last thing before the VMs.
pub(crate) const TEST_SECS: u64 = 20;
/// Seconds per target in `cargo xtask fuzz` without `--secs`.
pub(crate) const DEFAULT_SECS: u64 = 300;
/// Targets running at once: the machines have two cores.
const PARALLEL: usize = 2;

/// Builds the targets once and runs `targets` (all when empty), with
/// AddressSanitizer when `asan`.
pub(crate) fn fuzz(secs: u64, targets: &[String], asan: bool) -> Result<()> {
    for t in targets {
        if !TARGETS.contains(&t.as_str()) {
            bail!(
                "no fuzz target {t:?}; the targets are {}",
                TARGETS.join(", ")
            );
        }
    }
    let chosen: Vec<&str> = if targets.is_empty() {
        TARGETS.to_vec()
    } else {
        targets.iter().map(String::as_str).collect()
    };
    let started = Instant::now();
    let build = build_dir(asan);
    sh(&mut build_command(asan)).context("building the fuzz targets")?;
    eprintln!("xtask: fuzz targets built in {:.0?}", started.elapsed());

    let mut failed = Vec::new();
    for batch in chosen.chunks(PARALLEL) {
        let running: Vec<(&str, Child)> = batch
            .iter()
            .map(|t| start(&build, t, secs).map(|c| (*t, c)))
            .collect::<Result<_>>()?;
        for (t, mut child) in running {
            let st = child
                .wait()
                .with_context(|| format!("waiting for fuzz target {t}"))?;
            let log = fs::read_to_string(log_path(t)).unwrap_or_default();
            if st.success() {
                eprintln!("xtask: fuzz {t}: {secs} s, no crash ({})", runs(&log));
            } else {
                eprintln!("xtask: fuzz {t} FAILED ({st}); the end of its log:");
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                for line in tail.into_iter().rev() {
                    eprintln!("    {line}");
                }
                failed.push(t);
            }
        }
    }
    eprintln!("xtask: fuzzing took {:.0?} in all", started.elapsed());
    if !failed.is_empty() {
        bail!(
            "fuzz targets crashed: {} (inputs in fuzz/target/artifacts/; keep each as a seed \
             in fuzz/corpus/TARGET once fixed)",
            failed.join(", ")
        );
    }
    Ok(())
}

fn work_dir() -> PathBuf {
    root().join("fuzz/target")
}

/// The build of every target; `cargo xtask test` starts the same command
/// early in the background (xtask/src/prebuild.rs).
pub(crate) fn build_command(asan: bool) -> Command {
    let mut c = cmd("cargo");
    c.args([
        "+nightly",
        "fuzz",
        "build",
        "--fuzz-dir",
        "fuzz",
        "--debug-assertions",
        "--sanitizer",
        if asan { "address" } else { "none" },
        "--target-dir",
    ])
    .arg(build_dir(asan))
    // No target loads the eBPF programs: skipping their second build
    // (for the sanitizer's flags) saves minutes on a fresh clone.
    .env("AYA_BUILD_SKIP", "1");
    c
}

/// Each kind of build in its own directory: switching between `cargo xtask
/// fuzz` and `cargo xtask test` would otherwise rebuild everything.
fn build_dir(asan: bool) -> PathBuf {
    work_dir().join(if asan { "build-asan" } else { "build-plain" })
}

fn log_path(target: &str) -> PathBuf {
    work_dir().join("logs").join(format!("{target}.log"))
}

/// Starts one built target on its corpora, its output to its log.
fn start(build: &Path, target: &str, secs: u64) -> Result<Child> {
    let work = work_dir();
    let found = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    for d in [&found, &artifacts, &work.join("logs")] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let seeds = root().join("fuzz/corpus").join(target);
    if !seeds.is_dir() {
        bail!(
            "fuzz target {target} has no seed corpus at {}",
            seeds.display()
        );
    }
    let bin = binary(build, target);
    let log = fs::File::create(log_path(target)).context("creating the fuzz log")?;
    let mut c = cmd(&bin.display().to_string());
    c.arg(format!("-max_total_time={secs}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // One slow input is a finding as well (a hang on hostile input).
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        // New inputs go to the first directory, never into the seeds.
        .arg(&found)
        .arg(&seeds)
        .stdout(Stdio::from(log.try_clone().context("log handle")?))
        .stderr(Stdio::from(log));
    eprintln!("xtask: $ {}", show(&c));
    c.spawn()
        .with_context(|| format!("starting fuzz target {target}"))
}

fn binary(build: &Path, target: &str) -> PathBuf {
    // cargo-fuzz builds for the host triple, in release.
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    build.join(triple).join("release").join(target)
}

/// libFuzzer's "Done N runs in S second(s)" line, for the summary.
fn runs(log: &str) -> String {
    log.lines()
        .rev()
        .find_map(|l| l.strip_prefix("Done ").map(str::to_owned))
        .unwrap_or_else(|| "run count not reported".to_owned())
}
