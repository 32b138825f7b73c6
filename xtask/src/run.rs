//! `cargo xtask run` and the small process helpers every task uses.

use std::{
    path::PathBuf,
    process::{Command, ExitStatus},
};

use anyhow::{Context as _, Result, bail};

use crate::prereq;

/// Workspace root (xtask lives one level below it).
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("invariant: xtask is inside the workspace")
        .to_path_buf()
}

/// A command that runs in the workspace root.
pub(crate) fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.current_dir(root());
    c
}

/// Runs `c`, echoing it first; fails on a non-zero exit.
pub(crate) fn sh(c: &mut Command) -> Result<()> {
    let st = status(c)?;
    if !st.success() {
        bail!("`{}` failed with {st}", show(c));
    }
    Ok(())
}

pub(crate) fn status(c: &mut Command) -> Result<ExitStatus> {
    eprintln!("xtask: $ {}", show(c));
    c.status()
        .with_context(|| format!("starting `{}`", show(c)))
}

pub(crate) fn show(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

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
