//! The small process helpers every task uses: the workspace root, commands
//! that run there and echo themselves, and whether we are root.

use std::{
    path::PathBuf,
    process::{Command, ExitStatus},
};

use anyhow::{Context as _, Result, bail};

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

/// Every debug build and test run selects the whole workspace: cargo
/// enables a dependency's features by the packages a command selects, so
/// `-p agent` after `--workspace --exclude integration-test` rebuilt 70
/// crates and the eBPF object (121 s of a fresh clone's run, and 39 s more
/// for `-p integration-test`). Test targets are picked by name instead.
pub(crate) fn workspace_cargo(args: &[&str]) -> Command {
    let mut c = cmd("cargo");
    c.args(args).args(["--workspace", "--locked"]);
    c
}
