//! `cargo xtask dist`: the release binary packaged as a .deb with dpkg-deb
//! alone (no debhelper): the binary, the systemd unit, the default config
//! as a conffile, the policies, the state directory, the man pages and
//! shell completions the binary generates from its own flags, and the
//! maintainer scripts from packaging/deb/.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    prereq,
    shell::{cmd, root, sh},
};

pub(crate) const PACKAGE: &str = "debugmon";
const VERSION: &str = env!("CARGO_PKG_VERSION");

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

/// Total size in KiB of the files under `dir` (the control file's Installed-Size).
fn size_kib(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            size_kib(&entry.path())? * 1024
        } else {
            meta.len()
        };
    }
    Ok(total.div_ceil(1024))
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

/// Lays out the package tree under `stage` for `bin`.
fn stage(bin: &Path, stage: &Path, arch: &str) -> Result<()> {
    if stage.exists() {
        fs::remove_dir_all(stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    mkdir(stage, 0o755)?;
    install(bin, &stage.join("usr/bin/debugmon"), 0o755)?;
    let scratch = stage.with_extension("docs");
    docs(bin, stage, &scratch)?;
    for (src, dst, mode) in FILES {
        install(&root().join(src), &stage.join(dst), *mode)?;
    }
    let mut conffiles = vec!["/etc/debugmon/config.toml".to_owned()];
    mkdir(&stage.join("etc/debugmon/policies.d"), 0o755)?;
    for p in policies()? {
        let name = p
            .file_name()
            .expect("invariant: read_dir entries have names");
        let rel = Path::new("etc/debugmon/policies.d").join(name);
        install(&p, &stage.join(&rel), 0o644)?;
        conffiles.push(format!("/{}", rel.display()));
    }
    mkdir(&stage.join("var/lib/debugmon"), 0o700)?;

    let debian = stage.join("DEBIAN");
    mkdir(&debian, 0o755)?;
    for s in SCRIPTS {
        install(
            &root().join("packaging/deb").join(s),
            &debian.join(s),
            0o755,
        )?;
    }
    let installed = size_kib(stage)?;
    let control = format!(
        "Package: {PACKAGE}\n\
         Version: {VERSION}\n\
         Architecture: {arch}\n\
         Maintainer: debugmon maintainers <debugmon@example.invalid>\n\
         Installed-Size: {installed}\n\
         Depends: libc6\n\
         Recommends: tzdata\n\
         Section: admin\n\
         Priority: optional\n\
         Description: watches debugging on production Linux hosts\n \
         An eBPF agent that records ptrace, process memory access and debugger\n \
         execs as JSON records, with a systemd service, Prometheus metrics and\n \
         a status command.\n"
    );
    fs::write(debian.join("control"), control).context("writing DEBIAN/control")?;
    fs::write(debian.join("conffiles"), conffiles.join("\n") + "\n")
        .context("writing DEBIAN/conffiles")?;
    Ok(())
}

/// Builds the release binary and the .deb; returns the .deb's path.
pub(crate) fn build() -> Result<PathBuf> {
    prereq::ensure_build()?;
    sh(cmd("cargo").args(["build", "--release", "--locked", "-p", "agent"]))?;
    let bin = root().join("target/release/debugmon");
    let arch = arch()?;
    let out_dir = root().join("target/dist");
    let tree = out_dir.join(format!("{PACKAGE}_{VERSION}_{arch}"));
    stage(&bin, &tree, &arch)?;
    let deb = out_dir.join(format!("{PACKAGE}_{VERSION}_{arch}.deb"));
    // --root-owner-group: files are root:root whoever builds the package.
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&deb))?;
    Ok(deb)
}

pub(crate) fn dist() -> Result<()> {
    let deb = build()?;
    println!("{}", deb.display());
    Ok(())
}
