//! `cargo xtask run`: build the agent and run it on its embedded defaults.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{
    prereq,
    shell::{cmd, is_root, root, sh, status},
};

/// Builds the agent (release) and runs it on its defaults, records to stdout.
pub(crate) fn run(args: &[String]) -> Result<()> {
    if !is_root() {
        bail!("debugmon loads eBPF programs: run `cargo xtask run` as root");
    }
    prereq::ensure_build()?;
    sh(cmd("cargo").args(["build", "--release", "--locked", "-p", "agent"]))?;
    let bin = root().join("target/release/debugmon");
    // The embedded defaults: the repository's policies, records to stdout.
    let policies = root().join("policies");
    let st = status(
        Command::new(&bin)
            .arg("run")
            .arg("--policies")
            .arg(&policies)
            .args(args),
    )?;
    // Stopped by Ctrl-C: the agent drains and exits 0 on SIGINT.
    if !st.success() {
        bail!("debugmon exited with {st}");
    }
    Ok(())
}
