//! `cargo xtask test`: installs what is missing, then runs every check CI
//! runs, in order: format, the layout lint (`cargo xtask lint`), clippy
//! (host crates and, for the bpf target, the eBPF crate), unit tests,
//! promtool on the alert rules, the privileged tests against the running
//! kernel, each fuzz target for 20 s, the .deb install test, then the VM
//! tests and the package under a booted systemd (`cargo xtask
//! systemd-test`), those two VMs side by side. The fuzz targets (with
//! cargo-fuzz, when missing; from the start) and the release agent (after
//! clippy) build in the background at idle priority
//! (xtask/src/prebuild.rs). It fails loudly when the privileged tests did
//! not actually run.

use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    prereq,
    shell::{cmd, is_root, root, sh, show, workspace_cargo},
    stages::Stages,
};

/// Outcome of one `cargo test` invocation, read from its output.
#[derive(Default)]
struct Tally {
    passed: Vec<String>,
    failed: Vec<String>,
    ignored: Vec<String>,
}

/// Runs a `cargo test` command, streaming its stdout and tallying test lines.
fn cargo_test(c: &mut std::process::Command) -> Result<(bool, Tally)> {
    eprintln!("xtask: $ {}", show(c));
    let mut child = c
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{}`", show(c)))?;
    let out = child.stdout.take().expect("invariant: stdout is piped");
    let mut tally = Tally::default();
    for line in BufReader::new(out).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, result)) = rest.rsplit_once(" ... ")
        {
            let name = name.to_owned();
            match result.trim() {
                "ok" => tally.passed.push(name),
                r if r.starts_with("ignored") => tally.ignored.push(name),
                r if r.starts_with("FAILED") => tally.failed.push(name),
                _ => {}
            }
        }
    }
    let st = child.wait().context("waiting for cargo test")?;
    Ok((st.success(), tally))
}

/// The privileged suites, run on the host (root, the real kernel).
/// vm_enforce needs BPF-LSM: it runs inside `vm-test` with the others
/// `xtask/src/vm.rs` lists.
const PRIVILEGED: &[&str] = &[
    "exec",
    "coverage",
    "ops",
    "enforce",
    "delivery",
    "evasion",
    "quiet",
    "interfaces",
    "readonly",
    "inventory",
    "nats_security",
    "faults",
    "identity",
    "faults_kernel",
    "review_serve",
    "approvals",
];

pub(crate) fn test(privileged: bool) -> Result<()> {
    if privileged && !is_root() {
        bail!(
            "the privileged tests load eBPF programs and need root; run `cargo xtask test` as root \
             (or pass --no-privileged, which CI never does)"
        );
    }
    let mut st = Stages::new();
    st.run("install what is missing", prereq::ensure_all_but_fuzz)?;
    st.run("format and layout lint", || {
        sh(cmd("cargo").args(["+nightly", "fmt", "--all", "--", "--check"]))
            .context("formatting differs: run `cargo +nightly fmt --all`")?;
        crate::lint::lint()
    })?;
    // Builds later stages need, on the CPU the stages before them leave
    // idle; each stage repeats its build in the foreground (a no-op then).
    // The systemd VM's root image: debootstrap, mostly waiting on the
    // network. Joined before the host's privileged suites, whose agents
    // would otherwise watch it.
    let root_image = privileged.then(|| std::thread::spawn(crate::systemd_vm::prepare_image));
    // cargo-fuzz itself is installed with the fuzz build, when it is
    // missing (29 s of compiling on a fresh machine).
    let fuzz_build = crate::prebuild::Prebuild::start(
        "fuzz",
        &prereq::cargo_fuzz_install()
            .into_iter()
            .chain([crate::fuzz::build_command(false)])
            .collect::<Vec<_>>(),
    )?;
    st.run("clippy (host crates, eBPF crate, fuzz crate)", clippy)?;
    // Not before clippy: the eBPF crate's `--release` lint shares the
    // release build's directory lock and would wait for it.
    let release_build = if privileged {
        Some(crate::prebuild::Prebuild::start(
            "release",
            &[crate::dist::release_build_command()],
        )?)
    } else {
        None
    };
    let unit = st.run("unit tests", unit_tests)?;
    st.run("promtool", promtool_rules)?;

    let mut privileged_tally = Tally::default();
    let mut vm_passed = 0;
    if let Some(image) = root_image {
        // A failure is the systemd VM stage's to report: it builds the
        // image again.
        match image.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("xtask: the systemd VM's root image: {e:#}; built again later"),
            Err(_) => {
                eprintln!("xtask: building the systemd VM's root image panicked; built again later")
            }
        }
    }
    if privileged {
        privileged_tally = st.run("privileged suites on the host", host_privileged)?;
    }
    // Hostile input: every fuzz target for a short while, without the
    // sanitizer (xtask/src/fuzz.rs says why; docs/hardening.md). After the
    // privileged suites, whose idle CPU built the targets.
    st.run("fuzzing", || {
        fuzz_build.join();
        prereq::cargo_fuzz()?;
        crate::fuzz::fuzz(crate::fuzz::TEST_SECS, &[], false)
    })?;
    if privileged {
        // The package: built from the release binary, installed with dpkg
        // into a fresh root (chroot, hence only with the privileged tests).
        st.run("package test (dist-test)", || {
            if let Some(b) = release_build {
                b.join();
            }
            crate::dist_test::dist_test().context("package test (cargo xtask dist-test)")
        })?;
        // The VM suites (BPF-LSM, fentry) and the package under a booted
        // systemd (PID 1) in a VM of its own, side by side.
        vm_passed = st.run("VM suites and systemd VM, side by side", both_vms)?;
    } else {
        eprintln!(
            "xtask: WARNING: privileged tests, the package test and the VM tests skipped (--no-privileged)"
        );
    }
    st.print();
    let passed = unit.passed.len() + privileged_tally.passed.len() + vm_passed;
    println!();
    println!("total: {passed} passed, 0 failed");
    Ok(())
}

fn clippy() -> Result<()> {
    sh(cmd("cargo").args([
        "clippy",
        "--workspace",
        "--exclude",
        "agent-ebpf",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The eBPF crate is linted for the target it is built for.
    sh(cmd("cargo").args([
        "+nightly",
        "clippy",
        "-p",
        "agent-ebpf",
        "--release",
        "--locked",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The fuzz crate is its own workspace, so nothing above compiles it;
    // checked here (eBPF object skipped) so an API change that breaks a
    // target fails in seconds, not after the unit tests. Stable clippy in
    // the workspace's target directory reuses the check of the agent and
    // its dependencies made just above (40 s instead of 103 s on a fresh
    // clone); only `cargo xtask fuzz` needs nightly.
    sh(cmd("cargo")
        .args([
            "clippy",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--target-dir",
        ])
        .arg(root().join("target"))
        .args(["--bins", "--locked", "--", "-D", "warnings"])
        .env("AYA_BUILD_SKIP", "1"))
    .context("the fuzz targets do not build: see fuzz/fuzz_targets")
}

/// The unit tests: `cargo test` on the whole workspace, which leaves out
/// the privileged suites (`test = false` in tests/integration/Cargo.toml).
fn unit_tests() -> Result<Tally> {
    check_suites()?;
    let (ok, unit) = cargo_test(&mut workspace_cargo(&["test"]))?;
    if !ok || !unit.failed.is_empty() {
        bail!("unit tests failed: {:?}", unit.failed);
    }
    Ok(unit)
}

/// Fails when a suite of tests/integration runs nowhere (in neither
/// [`PRIVILEGED`] nor `VM_TESTS` in xtask/src/vm.rs: it would pass by
/// being forgotten), when it would run with the unit tests (it lacks
/// `test = false`), or when a test target elsewhere shares a suite's name
/// (`--test NAME` picks that target in every package).
fn check_suites() -> Result<()> {
    let o = cmd("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .output()
        .context("cargo metadata")?;
    if !o.status.success() {
        bail!("cargo metadata: {}", String::from_utf8_lossy(&o.stderr));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&o.stdout).context("reading cargo metadata")?;
    let listed = |name: &str| {
        PRIVILEGED.contains(&name) || crate::vm::VM_TESTS.iter().any(|(v, _)| *v == name)
    };
    let (mut suites, mut missing) = (0, Vec::new());
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let ours = pkg["name"] == "integration-test";
        for t in pkg["targets"].as_array().into_iter().flatten() {
            let is_test = t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "test"));
            let name = t["name"].as_str().unwrap_or_default();
            if !is_test {
                continue;
            }
            if ours {
                suites += 1;
                if !listed(name) {
                    missing.push(name.to_owned());
                }
                if t["test"] != false {
                    bail!(
                        "suite {name} would run with the unit tests: add it to tests/integration/Cargo.toml with `test = false`"
                    );
                }
            } else if listed(name) {
                bail!(
                    "test target {name:?} exists both in tests/integration and in another package"
                );
            }
        }
    }
    if suites == 0 {
        bail!("cargo metadata lists no suites in tests/integration");
    }
    if !missing.is_empty() {
        bail!(
            "privileged suites run nowhere (add them to PRIVILEGED in xtask/src/test.rs or VM_TESTS in xtask/src/vm.rs): {missing:?}"
        );
    }
    Ok(())
}

/// The privileged suites on the host (root, the real kernel): every one
/// runs, and none may be skipped.
fn host_privileged() -> Result<Tally> {
    // One BPF-loading run on the machine at a time: another worktree's
    // agent would see this run's processes, and they each other's.
    let _lock = crate::privlock::PrivLock::take()?;
    // Built by the unit tests' `cargo test --workspace` (the agent's own
    // tests run it). A `cargo build` here would resolve the dependencies'
    // features without the dev-dependencies and rebuild 30 crates (67 s
    // on a fresh clone).
    let bin = root().join("target/debug/debugmon");
    if !bin.exists() {
        bail!(
            "{} is missing: the unit tests' build makes it",
            bin.display()
        );
    }
    let (ok, t) = cargo_test(
        // Every suite runs, so one failure does not hide the rest.
        workspace_cargo(&["test", "--no-fail-fast"])
            .args(PRIVILEGED.iter().flat_map(|t| ["--test", t]))
            .args(["--", "--test-threads=1"])
            .env("DEBUGMON_BIN", &bin),
    )?;
    eprintln!();
    eprintln!("privileged tests (root, real kernel):");
    for name in &t.passed {
        eprintln!("  PASS {name}");
    }
    for name in &t.failed {
        eprintln!("  FAIL {name}");
    }
    for name in &t.ignored {
        eprintln!("  IGNORED {name}");
    }
    eprintln!(
        "privileged: {} passed, {} failed, {} ignored",
        t.passed.len(),
        t.failed.len(),
        t.ignored.len()
    );
    if !ok || !t.failed.is_empty() {
        bail!("privileged tests failed: {:?}", t.failed);
    }
    if t.passed.is_empty() || !t.ignored.is_empty() {
        bail!(
            "the privileged tests did not all run: {} passed, {} ignored",
            t.passed.len(),
            t.ignored.len()
        );
    }
    Ok(t)
}

/// The two VM stages at once. Each VM keeps about one of the two cores
/// busy (its emulated CPUs mostly wait on each other), and the systemd
/// VM's root image is built by debootstrap, mostly waiting on the network.
fn both_vms() -> Result<usize> {
    // Held here for both; each VM's own take sees it held by this process.
    let _lock = crate::privlock::PrivLock::take()?;
    // Both unpack the same kernel: once, before they start.
    crate::vm::kernel(&root().join("target/vm"))?;
    std::thread::scope(|s| {
        let systemd = s.spawn(crate::systemd_vm::systemd_test);
        let vm = crate::vm::vm_test();
        let systemd = systemd
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the systemd VM's thread panicked")));
        match (vm, systemd) {
            (Ok(a), Ok(b)) => Ok(a + b),
            (Err(e), Ok(_)) => Err(e.context("VM suites")),
            (Ok(_), Err(e)) => Err(e.context("systemd VM")),
            (Err(a), Err(b)) => Err(a.context(format!("VM suites; and the systemd VM: {b:#}"))),
        }
    })
}

/// `promtool check rules` and `promtool test rules` on the shipped alert
/// rules: syntax, and each alert firing on the synthetic series of
/// packaging/prometheus/debugmon.rules.test.yml.
fn promtool_rules() -> Result<()> {
    let dir = root().join("packaging/prometheus");
    let promtool = || {
        let mut c = cmd("promtool");
        c.current_dir(&dir);
        c
    };
    if promtool().arg("--version").output().is_err() {
        bail!(
            "promtool is missing: the alert rules cannot be checked (it comes with Debian's \
             prometheus package; `cargo xtask setup` installs it)"
        );
    }
    sh(promtool().args(["check", "rules", "debugmon.rules.yml"]))
        .context("promtool check rules packaging/prometheus/debugmon.rules.yml")?;
    sh(promtool().args(["test", "rules", "debugmon.rules.test.yml"]))
        .context("promtool test rules packaging/prometheus/debugmon.rules.test.yml")
}
