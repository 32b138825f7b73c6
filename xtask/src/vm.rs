//! `cargo xtask vm-test`: boots Debian 12's 6.1 cloud kernel under qemu
//! (TCG: `-enable-kvm` hangs on these machines) with `lsm=...,bpf`, runs the
//! agent and the VM test binaries inside a busybox initramfs, reads results
//! from the serial console and fails on any failure, or if the tests did not
//! run. It proves the programs load on a second kernel version (6.1 beside
//! the host's) and tests BPF-LSM enforcement, which the host kernel refuses.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::shell::{cmd, root, sh};

/// Test binaries run inside the VM, with cargo-test filters.
pub(crate) const VM_TESTS: &[(&str, &[&str])] = &[
    // The exec tests, less the two that need a fast machine (storm, stall).
    ("exec", &["--skip", "storm", "--skip", "stalled"]),
    ("vm_enforce", &[]),
    // The grant test's expiry path is the same kernel decision on both
    // mechanisms and runs on the host; under TCG it is too slow to fit.
    ("enforce", &["--skip", "grant"]),
    // Evasions under BPF-LSM; the shipped-policy names test is about
    // identity, not the mechanism, and needs the repository's policies.
    ("evasion", &["--skip", "names_a_user"]),
    // Read-only access: ptrace_access_check refuses the writing syscalls.
    ("readonly", &[]),
    // Sets the wall clock, which only the VM may do.
    ("vm_clock", &[]),
];

/// Tools the VM tests drive, with their libraries. The coreutils programs
/// replace busybox's applets: tests copy them under other names, and a
/// renamed busybox only answers "applet not found".
const VM_TOOLS: &[&str] = &[
    "/usr/bin/strace",
    "/usr/bin/gdb",
    "/bin/sleep",
    "/bin/true",
    "/bin/echo",
];

/// Trees gdb needs at run time: it embeds Python and stops at start
/// without the standard library, and reads its own Python package and
/// syscall names from its data directory.
const VM_TREES: &[&str] = &["/usr/lib/python3.11", "/usr/share/gdb"];

/// Parts of those trees no test reaches, left out to keep the image small.
const VM_TREES_SKIP: &[&str] = &[
    "__pycache__",
    "test",
    "idlelib",
    "tkinter",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "turtledemo",
    "dist-packages",
    "site-packages",
    "config-3.11-x86_64-linux-gnu",
];

fn kernel_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-cloud-amd64"])
        .output()
        .context("apt-cache depends linux-image-cloud-amd64")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|p| p.starts_with("linux-image-6.1"))
        .map(str::to_owned)
        .context("no linux-image-6.1 cloud package in the apt lists (run apt-get update)")
}

/// Downloads and unpacks the kernel once; returns the vmlinuz path.
pub(crate) fn kernel(dir: &Path) -> Result<PathBuf> {
    let kdir = dir.join("kernel");
    if let Some(v) = find_vmlinuz(&kdir) {
        return Ok(v);
    }
    fs::create_dir_all(&kdir)?;
    let pkg = kernel_package().or_else(|_| {
        sh(cmd("apt-get").args(["update", "-qq"]))?;
        kernel_package()
    })?;
    eprintln!("xtask: downloading {pkg}");
    sh(Command::new("apt-get")
        .args(["download", &pkg])
        .current_dir(&kdir))?;
    let deb = fs::read_dir(&kdir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("downloaded kernel .deb not found")?;
    sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&kdir))?;
    find_vmlinuz(&kdir).context("vmlinuz not found in the kernel package")
}

fn find_vmlinuz(kdir: &Path) -> Option<PathBuf> {
    fs::read_dir(kdir.join("boot"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-6.1"))
        })
}

/// Shared libraries `ldd` lists for `bin`, by absolute path.
fn libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(bin).output().context("ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Copies `src` to `dst_rel` under `rootfs`; returns where it went.
fn copy_into(rootfs: &Path, src: &Path, dst_rel: &Path) -> Result<PathBuf> {
    let dst = rootfs.join(dst_rel.strip_prefix("/").unwrap_or(dst_rel));
    if let Some(p) = dst.parent() {
        fs::create_dir_all(p)?;
    }
    // Follow symlinks: the initramfs gets the real file at the linked path.
    fs::copy(src, &dst).with_context(|| format!("copy {} -> {}", src.display(), dst.display()))?;
    Ok(dst)
}

/// Copies the tree at `src` to the same path under `rootfs`, less the
/// names in [`VM_TREES_SKIP`], with the libraries its shared objects need.
fn copy_tree(rootfs: &Path, src: &Path, libs_out: &mut BTreeSet<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(src).with_context(|| format!("read {}", src.display()))? {
        let entry = entry?;
        let path = entry.path();
        if VM_TREES_SKIP.iter().any(|s| entry.file_name() == *s) {
            continue;
        }
        // A dangling link (a module of a package not installed) is skipped.
        let Ok(kind) = fs::metadata(&path) else {
            continue;
        };
        if kind.is_dir() {
            copy_tree(rootfs, &path, libs_out)?;
        } else {
            copy_into(rootfs, &path, &path)?;
            if path.extension().is_some_and(|e| e == "so") {
                libs_out.extend(libs(&path)?);
            }
        }
    }
    Ok(())
}

/// Builds the test binaries and returns (name, path, filter args).
fn build_tests() -> Result<Vec<(String, PathBuf, Vec<String>)>> {
    sh(&mut crate::dist::release_build_command())?;
    let mut out = Vec::new();
    for (name, filters) in VM_TESTS {
        let o = crate::shell::workspace_cargo(&["test", "--no-run", "--test", name])
            .args(["--message-format", "json"])
            .stderr(Stdio::inherit())
            .output()
            .context("cargo test --no-run")?;
        if !o.status.success() {
            bail!("building test binary {name} failed");
        }
        let text = String::from_utf8_lossy(&o.stdout);
        let exe = text
            .lines()
            .filter(|l| l.contains("\"executable\"") && l.contains(&format!("\"name\":\"{name}\"")))
            .find_map(|l| {
                let i = l.find("\"executable\":\"")? + 14;
                let rest = &l[i..];
                Some(PathBuf::from(&rest[..rest.find('"')?]))
            })
            .with_context(|| format!("no executable for test {name}"))?;
        out.push((
            (*name).to_owned(),
            exe,
            filters.iter().map(|s| (*s).to_owned()).collect(),
        ));
    }
    Ok(out)
}

fn init_script(tests: &[(String, PathBuf, Vec<String>)]) -> String {
    let mut s = String::from(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/sbin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t securityfs securityfs /sys/kernel/security
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
hostname debugmon-vm
echo "VM: kernel $(uname -r) lsm=$(cat /sys/kernel/security/lsm)"
export DEBUGMON_BIN=/bin/debugmon DEBUGMON_VM=1 RUST_BACKTRACE=1
# With BPF-LSM the agent takes signals only from pid 1: tests write
# "SIGNAL PID" to the request file and send USR1; this trap (run by init,
# pid 1, between waits) delivers the signal.
trap 'read S P < /tmp/debugmon-stop-request && kill -$S $P' USR1
"#,
    );
    for (name, _, filters) in tests {
        s.push_str(&format!(
            "echo VM-BEGIN {name}\n/tests/{name} --test-threads=1 {} 2>&1 &\nT=$!\n\
             while kill -0 $T 2>/dev/null; do wait $T; done\nwait $T\necho VM-EXIT {name} $?\n",
            filters.join(" ")
        ));
    }
    // pid 1 may stop the agent (systemctl stop): SIGTERM from here must work.
    s.push_str(
        r#"echo VM-BEGIN pid1
/bin/debugmon run > /tmp/a.out 2> /tmp/a.err &
A=$!
i=0
while ! grep -q '"event":"started"' /tmp/a.out 2>/dev/null; do
  i=$((i+1)); [ $i -gt 600 ] && break; sleep 0.1
done
kill -TERM $A
wait $A
RC=$?
if [ $RC -eq 0 ] && grep -q '"event":"stopped"' /tmp/a.out && grep -q '"mechanism":"lsm"' /tmp/a.out; then
  echo "test sigterm_from_pid1_stops_the_agent_cleanly ... ok"
else
  echo "test sigterm_from_pid1_stops_the_agent_cleanly ... FAILED (rc $RC)"; cat /tmp/a.err; head -c 2000 /tmp/a.out
fi
echo VM-EXIT pid1 0
echo VM-DONE
poweroff -f
"#,
    );
    s
}

fn build_initramfs(dir: &Path, tests: &[(String, PathBuf, Vec<String>)]) -> Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    let _ = fs::remove_dir_all(&rootfs);
    for d in [
        "bin", "sbin", "usr/bin", "tests", "proc", "sys", "dev", "tmp", "etc", "root", "run",
    ] {
        fs::create_dir_all(rootfs.join(d))?;
    }
    copy_into(
        &rootfs,
        Path::new("/bin/busybox"),
        Path::new("/bin/busybox"),
    )?;
    // The release agent, as shipped: under emulation the debug build's
    // start-up (BTF parsing, program loads) made the suites take 466 s
    // against 281 s with this one.
    let agent = root().join("target/release/debugmon");
    let mut bins: Vec<(PathBuf, PathBuf)> = vec![(agent, PathBuf::from("/bin/debugmon"))];
    for (name, exe, _) in tests {
        bins.push((exe.clone(), PathBuf::from(format!("/tests/{name}"))));
    }
    for t in VM_TOOLS {
        bins.push((PathBuf::from(t), PathBuf::from(t)));
    }
    // The tests' attacker and target, at the path they were built with.
    let dmtool = root().join("target/debug/dmtool");
    bins.push((dmtool.clone(), dmtool));
    let mut lib_set = BTreeSet::new();
    for (src, dst) in &bins {
        let copy = copy_into(&rootfs, src, dst)?;
        lib_set.extend(libs(src)?);
        // Our test binaries are debug builds, mostly DWARF: without it the
        // image is smaller (56 MB gzipped with the release agent), though
        // the suites' time barely moved. Symbols stay, so a backtrace
        // still names its functions.
        if src.starts_with(root()) {
            sh(cmd("objcopy").arg("--strip-debug").arg(&copy))
                .with_context(|| format!("stripping debug info from {}", copy.display()))?;
        }
    }
    for tree in VM_TREES {
        copy_tree(&rootfs, Path::new(tree), &mut lib_set)?;
    }
    // gdb loads libthread_db to see a process's threads.
    lib_set.insert(PathBuf::from("/lib/x86_64-linux-gnu/libthread_db.so.1"));
    for lib in lib_set {
        copy_into(&rootfs, &lib, &lib)?;
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    fs::write(
        rootfs.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )?;
    let init = rootfs.join("init");
    fs::write(&init, init_script(tests))?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let image = dir.join("initramfs.cpio.gz");
    let script = format!(
        "cd {} && find . | cpio -o -H newc --quiet | gzip -1 > {}",
        rootfs.display(),
        image.display()
    );
    sh(Command::new("sh").args(["-c", &script]))?;
    Ok(image)
}

/// Boots the VM, streams the console, and returns the test outcome lines.
fn boot(vmlinuz: &Path, initrd: &Path, expect: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-m", "2048", "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 quiet lsm=lockdown,capability,landlock,yama,bpf",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    let mut exits = Vec::new();
    let mut done = false;
    crate::console::follow(&mut child, "vm", Duration::from_secs(20 * 60), |line| {
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, result)) = rest.rsplit_once(" ... ")
        {
            if result.starts_with("ok") {
                passed.push(name.to_owned());
            } else if result.starts_with("FAILED") {
                failed.push(name.to_owned());
            }
        }
        if let Some(rest) = line.strip_prefix("VM-EXIT ") {
            exits.push(rest.to_owned());
        }
        if line == "VM-DONE" {
            done = true;
        }
    })?;
    if !done {
        bail!("the VM did not finish its tests (no VM-DONE line); see the console above");
    }
    for name in expect {
        if !exits.iter().any(|e| e.starts_with(&format!("{name} "))) {
            bail!("test binary {name} did not run in the VM");
        }
    }
    for e in &exits {
        if !e.ends_with(" 0") {
            failed.push(format!("binary {e}"));
        }
    }
    Ok((passed, failed))
}

pub(crate) fn vm_test() -> Result<usize> {
    // The VM's two busy vCPUs would skew another run's timing-sensitive
    // host tests.
    let _lock = crate::privlock::PrivLock::take()?;
    let dir = root().join("target/vm");
    fs::create_dir_all(&dir)?;
    let vmlinuz = kernel(&dir)?;
    let tests = build_tests()?;
    let initrd = build_initramfs(&dir, &tests)?;
    let mut expect: Vec<String> = tests.iter().map(|t| t.0.clone()).collect();
    expect.push("pid1".into());
    let (passed, failed) = boot(&vmlinuz, &initrd, &expect)?;
    eprintln!();
    eprintln!("VM tests (Debian 6.1 kernel, BPF-LSM):");
    for p in &passed {
        eprintln!("  PASS {p}");
    }
    for f in &failed {
        eprintln!("  FAIL {f}");
    }
    eprintln!("vm: {} passed, {} failed", passed.len(), failed.len());
    if !failed.is_empty() {
        bail!("VM tests failed: {failed:?}");
    }
    if passed.is_empty() {
        bail!("no VM test passed: the VM tests did not run");
    }
    Ok(passed.len())
}
