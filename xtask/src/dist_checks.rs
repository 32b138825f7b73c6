//! The package test's static checks: lintian on the .deb (any error or
//! warning fails; informational tags are printed) and systemd's own
//! exposure score of the unit (`systemd-analyze security --offline`),
//! which must stay at or below [`MAX_EXPOSURE`].

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, ensure};

/// The exposure score the unit must not exceed (0 = fully sandboxed, 10 =
/// unprotected). The agent needs CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN and
/// ptrace-class capabilities and the host's /proc, which systemd scores as
/// exposure however tight the rest is; docs/operations.md explains the
/// measured score.
pub(crate) const MAX_EXPOSURE: f64 = 4.0;

fn said(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Lintian on `deb`: errors and warnings fail (overrides shipped in the
/// package, each with its reason, are honoured); info tags are shown.
pub(crate) fn lintian(deb: &Path) -> Result<()> {
    let o = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--display-info"])
        .arg(deb)
        .output()
        .context("running lintian (cargo xtask setup installs it)")?;
    let out = said(&o);
    // lintian says so when it runs as root; that is not about the package.
    let tags: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("running with root privileges"))
        .collect();
    for t in &tags {
        println!("lintian: {t}");
    }
    ensure!(
        o.status.success(),
        "lintian failed on {} ({}):\n{}",
        deb.display(),
        o.status,
        tags.join("\n")
    );
    Ok(())
}

/// `systemd-analyze security --offline=yes` of `unit`: the overall
/// exposure, which must be at most [`MAX_EXPOSURE`].
pub(crate) fn exposure(unit: &Path, root: &Path) -> Result<f64> {
    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg(unit)
        .output()
        .context("running systemd-analyze security")?;
    let out = said(&o);
    let score = out
        .lines()
        .find_map(|l| {
            let rest = l.split_once("Overall exposure level for ")?.1;
            rest.split_once(": ")?
                .1
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .with_context(|| {
            format!("no exposure level in systemd-analyze security's output:\n{out}")
        })?;
    ensure!(
        score <= MAX_EXPOSURE,
        "the unit's exposure is {score}, above {MAX_EXPOSURE}:\n{out}"
    );
    Ok(score)
}
