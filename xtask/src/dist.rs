//! `cargo xtask dist`: the release binary packaged as a .deb with dpkg-deb
//! alone (no debhelper): the stripped binary, the systemd unit, the default
//! config as a conffile (with empty `config.d/` and `policies.d/` for the
//! site), the shipped policies under /usr/share/debugmon/policies (updated
//! with the package, not conffiles), the man pages and shell completions
//! the binary generates from its own flags, the maintainer scripts from
//! packaging/deb/, and the metadata lintian expects ([`crate::dist_meta`]).

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    dist_meta::{self, PACKAGE},
    prereq,
    shell::{cmd, root, sh},
};

/// What goes where, with which mode (source relative to the workspace root).
const FILES: &[(&str, &str, u32)] = &[
    (
        "packaging/systemd/debugmon.service",
        "lib/systemd/system/debugmon.service",
        0o644,
    ),
    // 0600: admins add NATS credentials here.
    ("packaging/config.toml", "etc/debugmon/config.toml", 0o600),
    ("README.md", "usr/share/doc/debugmon/README.md", 0o644),
    (
        "docs/operations.md",
        "usr/share/doc/debugmon/operations.md",
        0o644,
    ),
    ("docs/nats.md", "usr/share/doc/debugmon/nats.md", 0o644),
    // The dashboard and alert rules of docs/metrics.md, for the
    // monitoring side to import.
    (
        "packaging/grafana/debugmon.json",
        "usr/share/debugmon/grafana/debugmon.json",
        0o644,
    ),
    (
        "packaging/prometheus/debugmon.rules.yml",
        "usr/share/debugmon/prometheus/debugmon.rules.yml",
        0o644,
    ),
    // A drop-in turning NATS over TLS with credentials on (docs/nats.md).
    (
        "packaging/examples/50-nats-tls.toml",
        "usr/share/doc/debugmon/examples/50-nats-tls.toml",
        0o644,
    ),
];

const SCRIPTS: &[&str] = &["postinst", "prerm", "postrm"];

fn arch() -> Result<String> {
    let o = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .context("running dpkg --print-architecture")?;
    if !o.status.success() {
        bail!("dpkg --print-architecture failed");
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn install(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = dst.parent() {
        mkdir(parent, 0o755)?;
    }
    fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dst.display()))
}

fn mkdir(dir: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dir.display()))
}

/// The repository's policies (`policies/*.yaml`), sorted.
fn policies() -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root().join("policies")).context("reading policies/")? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Where each generated completion goes: the directories Debian's bash,
/// zsh and fish packages read vendor completions from.
const COMPLETION_DIRS: &[(&str, &str)] = &[
    (
        "debugmon.bash",
        "usr/share/bash-completion/completions/debugmon",
    ),
    ("_debugmon", "usr/share/zsh/vendor-completions/_debugmon"),
    (
        "debugmon.fish",
        "usr/share/fish/vendor_completions.d/debugmon.fish",
    ),
];

/// Runs `bin generate-docs` and installs its man pages (gzipped, as
/// Debian policy wants them) and completions into `stage`.
fn docs(bin: &Path, stage: &Path, scratch: &Path) -> Result<()> {
    if scratch.exists() {
        fs::remove_dir_all(scratch).with_context(|| format!("removing {}", scratch.display()))?;
    }
    sh(Command::new(bin)
        .arg("generate-docs")
        .arg("--out")
        .arg(scratch))?;
    let man = stage.join("usr/share/man/man1");
    mkdir(&man, 0o755)?;
    let mut pages: Vec<PathBuf> = fs::read_dir(scratch.join("man1"))
        .context("reading the generated man pages")?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    pages.sort();
    if !pages.iter().any(|p| p.ends_with("debugmon.1")) {
        bail!("generate-docs wrote no debugmon.1");
    }
    for page in pages {
        let name = page
            .file_name()
            .expect("invariant: read_dir entries have names");
        let dst = man.join(format!("{}.gz", name.to_string_lossy()));
        // -n: no name or time stamp inside, so the package is reproducible.
        let out = Command::new("gzip")
            .args(["-9n", "-c"])
            .arg(&page)
            .output()
            .context("running gzip")?;
        if !out.status.success() {
            bail!("gzip {} failed", page.display());
        }
        fs::write(&dst, out.stdout).with_context(|| format!("writing {}", dst.display()))?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o644))?;
    }
    for (src, dst) in COMPLETION_DIRS {
        install(
            &scratch.join("completions").join(src),
            &stage.join(dst),
            0o644,
        )?;
    }
    Ok(())
}

/// Lays out the package tree under `stage` for `bin` (`stage` is
/// `build/debian/<package>`, where dpkg-shlibdeps expects it).
fn stage(bin: &Path, build: &Path, stage: &Path, arch: &str, version: &str) -> Result<()> {
    if build.exists() {
        fs::remove_dir_all(build).with_context(|| format!("removing {}", build.display()))?;
    }
    mkdir(stage, 0o755)?;
    let staged_bin = stage.join("usr/bin/debugmon");
    install(bin, &staged_bin, 0o755)?;
    // Debian ships stripped binaries (debug symbols belong in a -dbgsym
    // package); --strip-unneeded keeps what the dynamic linker needs.
    sh(Command::new("strip")
        .args(["--strip-unneeded", "--remove-section=.comment"])
        .arg(&staged_bin))
    .context("stripping the binary")?;
    let scratch = build.join("generated-docs");
    docs(bin, stage, &scratch)?;
    for (src, dst, mode) in FILES {
        install(&root().join(src), &stage.join(dst), *mode)?;
    }
    let conffiles = vec!["/etc/debugmon/config.toml".to_owned()];
    // The site's directories: its policies (a file named like a shipped
    // one replaces it) and its config drop-ins. Empty, owned by dpkg.
    mkdir(&stage.join("etc/debugmon/policies.d"), 0o755)?;
    mkdir(&stage.join("etc/debugmon/config.d"), 0o755)?;
    let shipped = stage.join("usr/share/debugmon/policies");
    mkdir(&shipped, 0o755)?;
    for p in policies()? {
        let name = p
            .file_name()
            .context("a policies/ entry without a file name")?;
        install(&p, &shipped.join(name), 0o644)?;
    }
    // Not /var/lib/debugmon: postinst and systemd's StateDirectory create it
    // with mode 0700, which lintian would flag in the package.

    let debian = stage.join("DEBIAN");
    mkdir(&debian, 0o755)?;
    for s in SCRIPTS {
        install(
            &root().join("packaging/deb").join(s),
            &debian.join(s),
            0o755,
        )?;
    }
    dist_meta::write(build, stage, arch, &conffiles, version)
}

/// Builds the release binary and the .deb; returns the .deb's path.
pub(crate) fn build() -> Result<PathBuf> {
    build_with("")
}

/// The package as released, and the same binary packaged as a newer
/// version: what the systemd test upgrades from and to.
pub(crate) fn build_pair() -> Result<(PathBuf, PathBuf)> {
    Ok((build_with("")?, build_with(UPGRADE_SUFFIX)?))
}

/// The version suffix of [`build_pair`]'s newer package.
pub(crate) const UPGRADE_SUFFIX: &str = "+upgradetest1";

/// The release build of the agent (what `cargo xtask test` starts early in
/// the background, xtask/src/prebuild.rs).
pub(crate) fn release_build_command() -> Command {
    let mut c = cmd("cargo");
    c.args(["build", "--release", "--locked", "-p", "agent"]);
    c
}

/// [`build`] with `suffix` appended to the Debian version.
pub(crate) fn build_with(suffix: &str) -> Result<PathBuf> {
    prereq::ensure_build()?;
    sh(&mut release_build_command())?;
    let bin = root().join("target/release/debugmon");
    let arch = arch()?;
    let out_dir = root().join("target/dist");
    let build = out_dir.join("build");
    let tree = build.join("debian").join(PACKAGE);
    let version = dist_meta::deb_version(suffix);
    stage(&bin, &build, &tree, &arch, &version)?;
    let deb = out_dir.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    // --root-owner-group: files are root:root whoever builds the package.
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&deb))?;
    Ok(deb)
}

pub(crate) fn dist(version_suffix: &str) -> Result<()> {
    let deb = build_with(version_suffix)?;
    println!("{}", deb.display());
    Ok(())
}
