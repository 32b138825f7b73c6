//! Developer tasks: `cargo xtask run` (build and run the agent on its
//! defaults), `cargo xtask test` (install what is missing, then every check
//! CI runs), `cargo xtask setup` (only the installs), `cargo xtask dist`
//! (the .deb), `cargo xtask dist-test` (install it into a fresh root),
//! `cargo xtask bench` (overhead, event rate, latency, cost; BENCHMARKS.md),
//! `cargo xtask fuzz` (the fuzz targets in fuzz/, docs/hardening.md),
//! `cargo xtask vm-test` (BPF-LSM under qemu), `cargo xtask systemd-test`
//! (the package under a booted systemd, docs/operations.md).

mod bench;
mod console;
mod dist;
mod dist_checks;
mod dist_meta;
mod dist_test;
mod fuzz;
mod lint;
mod prebuild;
mod prereq;
mod privlock;
mod run;
mod shell;
mod stages;
mod systemd_vm;
mod test;
mod vm;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "debugmon developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install missing prerequisites, build, and run the agent (records to stdout)
    Run {
        /// Extra arguments for `debugmon run`
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Install missing prerequisites and run every check: fmt, clippy, unit and privileged tests
    Test {
        /// Skip the privileged (root, real kernel) tests; CI never does
        #[arg(long)]
        no_privileged: bool,
    },
    /// Boot Debian's 6.1 kernel in qemu (BPF-LSM) and run the enforcement tests inside
    VmTest,
    /// Boot a Debian 12 root with systemd as PID 1 in qemu (BPF-LSM) and test the installed package
    SystemdTest,
    /// Only install missing prerequisites
    Setup,
    /// Check the layout: no module cycles, no file over 600 lines, short entry points
    Lint,
    /// Build the release binary and the .deb package; prints its path
    Dist {
        /// Appended to the Debian version (e.g. `+local1`): the same source
        /// packaged as a newer version, to test an upgrade
        #[arg(long, default_value = "")]
        version_suffix: String,
    },
    /// Build the .deb and check it installs, reinstalls, removes and purges in a fresh root (root)
    DistTest,
    /// Build the fuzz targets once and run each (two at a time) from its seed corpus
    Fuzz {
        /// Seconds per target
        #[arg(long, default_value_t = fuzz::DEFAULT_SECS)]
        secs: u64,
        /// Without AddressSanitizer: a faster build and several times the
        /// inputs per second, as `cargo xtask test` runs them
        #[arg(long)]
        no_asan: bool,
        /// Targets to run (all when none): decode, policy, config, control, canonical, verify
        targets: Vec<String>,
    },
    /// Measure exec/ptrace overhead, event rate, latency and cost (root; ~5 min); writes bench/results.json
    Bench,
    /// (bench helper) fork and reap N children that exit at once
    #[command(hide = true)]
    BenchFork { n: u64 },
    /// (bench helper) exec storm alone, for profiling and A/A checks: prints execs/s
    #[command(hide = true)]
    BenchStorm {
        #[arg(long, default_value_t = 10_000)]
        execs: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// (bench helper) this host's CPU per thread wake-up, as the bench's first row
    #[command(hide = true)]
    BenchWake,
    /// (bench helper) two agents (binaries or flags) in alternating exec storms: CPU per exec, latency
    #[command(hide = true)]
    BenchAb {
        /// Side A's agent binary
        #[arg(long)]
        a: PathBuf,
        /// Side B's agent binary (default: side A's)
        #[arg(long)]
        b: Option<PathBuf>,
        /// Flags after `run` for side A (one string, split on spaces)
        #[arg(long, default_value = "")]
        args_a: String,
        /// Flags after `run` for side B
        #[arg(long, default_value = "")]
        args_b: String,
        #[arg(long, default_value_t = 4)]
        rounds: usize,
        #[arg(long, default_value_t = 5_000)]
        execs: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run { args } => run::run(&args),
        Command::Test { no_privileged } => test::test(!no_privileged),
        Command::VmTest => {
            prereq::ensure_all()?;
            vm::vm_test().map(|_| ())
        }
        Command::SystemdTest => {
            prereq::ensure_all()?;
            systemd_vm::systemd_test().map(|_| ())
        }
        Command::Setup => prereq::ensure_all(),
        Command::Lint => lint::lint(),
        Command::Dist { version_suffix } => dist::dist(&version_suffix),
        Command::DistTest => dist_test::dist_test(),
        Command::Fuzz {
            secs,
            no_asan,
            targets,
        } => {
            prereq::ensure_build()?;
            prereq::cargo_fuzz()?;
            fuzz::fuzz(secs, &targets, !no_asan)
        }
        Command::Bench => bench::bench(),
        Command::BenchFork { n } => bench::fork_child(n),
        Command::BenchStorm { execs, workers } => bench::storm_only(execs, workers),
        Command::BenchWake => bench::wake_only(),
        Command::BenchAb {
            a,
            b,
            args_a,
            args_b,
            rounds,
            execs,
        } => {
            let side = |bin: PathBuf, args: &str| bench::ab::Side {
                bin,
                args: args.split_whitespace().map(str::to_owned).collect(),
            };
            let b = b.unwrap_or_else(|| a.clone());
            bench::ab::ab([side(a, &args_a), side(b, &args_b)], rounds, execs)
        }
    }
}
