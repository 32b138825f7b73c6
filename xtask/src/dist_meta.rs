//! The package's metadata for `cargo xtask dist`: the control file with a
//! versioned Depends worked out by dpkg-shlibdeps, `DEBIAN/md5sums`, the
//! machine-readable copyright file, `changelog.Debian.gz` and the lintian
//! overrides, each what Debian policy and lintian expect of a binary
//! package built without debhelper.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::shell::root;

pub(crate) const PACKAGE: &str = "debugmon";

/// The Debian revision of our own packaging: the version is
/// `<crate version>-<DEB_REVISION>`, a non-native package.
pub(crate) const DEB_REVISION: &str = "1";

/// `suffix` (empty for a release) marks a rebuild of the same source as
/// newer, e.g. `+systemdtest1` for the systemd test's upgrade.
pub(crate) fn deb_version(suffix: &str) -> String {
    format!("{}-{DEB_REVISION}{suffix}", env!("CARGO_PKG_VERSION"))
}

const MAINTAINER: &str = "debugmon maintainers <debugmon@example.invalid>";

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

/// Runs `cmd`, returning its stdout; stderr goes into the error.
fn output(cmd: &mut Command) -> Result<String> {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !o.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `libc6 (>= 2.34), ...` for the staged binary, from the symbol versions
/// it uses (dpkg-shlibdeps). `build` holds `debian/<package>/` = the stage.
fn shlibs_depends(build: &Path, bin_rel: &str) -> Result<String> {
    let debian = build.join("debian");
    // dpkg-shlibdeps reads the source package's control file for the
    // package names; a minimal one is enough.
    fs::write(
        debian.join("control"),
        format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n"),
    )?;
    let out = output(
        Command::new("dpkg-shlibdeps")
            .args(["-O", "-e"])
            .arg(Path::new("debian").join(PACKAGE).join(bin_rel))
            .current_dir(build),
    )?;
    let deps = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .context("dpkg-shlibdeps printed no shlibs:Depends")?
        .trim()
        .to_owned();
    ensure!(
        deps.contains("libc6 (>="),
        "dpkg-shlibdeps gave no versioned libc6 dependency: {deps}"
    );
    Ok(deps)
}

/// Every regular file under `dir`, relative to `base`, sorted.
fn files_under(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let t = entry.file_type()?;
        if t.is_dir() {
            files_under(base, &entry.path(), out)?;
        } else if t.is_file() {
            out.push(entry.path().strip_prefix(base)?.to_path_buf());
        }
    }
    Ok(())
}

/// `DEBIAN/md5sums`: every shipped file except the conffiles (dpkg keeps
/// those itself), as md5sum prints them.
fn md5sums(stage: &Path, conffiles: &[String]) -> Result<String> {
    let mut files = Vec::new();
    for top in fs::read_dir(stage)? {
        let top = top?;
        if top.file_name() != "DEBIAN" && top.file_type()?.is_dir() {
            files_under(stage, &top.path(), &mut files)?;
        }
    }
    files.retain(|f| {
        !conffiles
            .iter()
            .any(|c| Path::new(c) == Path::new("/").join(f))
    });
    files.sort();
    ensure!(!files.is_empty(), "nothing staged to checksum");
    output(
        Command::new("md5sum")
            .arg("--")
            .args(&files)
            .current_dir(stage),
    )
}

fn gzip_to(text: &str, dst: &Path) -> Result<()> {
    // -n: no name or timestamp in the header, so rebuilds are identical.
    let mut child = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(fs::File::create(dst).with_context(|| format!("creating {}", dst.display()))?)
        .spawn()
        .context("running gzip")?;
    child
        .stdin
        .take()
        .context("gzip stdin")?
        .write_all(text.as_bytes())?;
    ensure!(child.wait()?.success(), "gzip failed");
    Ok(())
}

/// The changelog entry of this version, dated by the last commit so that
/// a rebuild of the same tree is byte-identical.
fn changelog(version: &str) -> Result<String> {
    let date = output(
        Command::new("git")
            .args(["log", "-1", "--format=%aD"])
            .current_dir(root()),
    )
    .unwrap_or_default();
    let date = date.trim();
    let date = if date.is_empty() {
        "Thu, 01 Jan 2026 00:00:00 +0000"
    } else {
        date
    };
    Ok(format!(
        "{PACKAGE} ({version}) unstable; urgency=medium\n\n  \
         * Package built from the debugmon repository by `cargo xtask dist`.\n    \
         The project's history is its git log; docs/operations.md describes\n    \
         the package.\n\n -- {MAINTAINER}  {date}\n"
    ))
}

/// Writes the control file (Depends: what the binary links;
/// init-system-helpers, whose
/// deb-systemd-* the maintainer scripts call, is essential in Debian 12), md5sums, docs and overrides into `stage`
/// (which is `build/debian/<package>`); `conffiles` are absolute paths.
pub(crate) fn write(
    build: &Path,
    stage: &Path,
    arch: &str,
    conffiles: &[String],
    version: &str,
) -> Result<()> {
    let doc = stage.join("usr/share/doc").join(PACKAGE);
    fs::create_dir_all(&doc)?;
    fs::copy(
        root().join("packaging/deb/copyright"),
        doc.join("copyright"),
    )
    .context("copying packaging/deb/copyright")?;
    gzip_to(&changelog(version)?, &doc.join("changelog.Debian.gz"))?;
    let overrides = stage.join("usr/share/lintian/overrides");
    fs::create_dir_all(&overrides)?;
    fs::copy(
        root().join("packaging/deb/lintian-overrides"),
        overrides.join(PACKAGE),
    )
    .context("copying packaging/deb/lintian-overrides")?;

    let depends = shlibs_depends(build, "usr/bin/debugmon")?;
    let debian = stage.join("DEBIAN");
    let installed = size_kib(stage)?;
    let control = format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed}\n\
         Depends: {depends}\n\
         Recommends: tzdata\n\
         Section: admin\n\
         Priority: optional\n\
         Description: watches debugging on production Linux hosts\n \
         An eBPF agent that records ptrace, process memory access and debugger\n \
         execs as sealed JSON records, enforces a site's debugging policy, and\n \
         ships the records to NATS JetStream. Runs as a hardened systemd\n \
         service with Prometheus metrics and a status command.\n"
    );
    fs::write(debian.join("control"), control).context("writing DEBIAN/control")?;
    fs::write(debian.join("conffiles"), conffiles.join("\n") + "\n")
        .context("writing DEBIAN/conffiles")?;
    fs::write(debian.join("md5sums"), md5sums(stage, conffiles)?)
        .context("writing DEBIAN/md5sums")?;
    Ok(())
}
