//! `cargo xtask systemd-test`: the package under a real systemd as PID 1.
//! A Debian 12 root made once by debootstrap is kept as an ext4 image under
//! target/vm/; qemu boots it with the 6.1 cloud kernel of `vm-test` and
//! BPF-LSM on, and a test unit inside (xtask/systemd/driver.sh) installs
//! the .deb and checks install, reload, restart, watchdog, journald,
//! upgrade, purge, the unit's exposure and a DynamicUser's name. Each check
//! prints one `SYSTEMD-TEST PASS|FAIL name` line on the serial console; the
//! run fails on a FAIL and on any expected check that printed nothing.

use std::{
    fs,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    dist, dist_checks,
    shell::{root, sh},
    vm,
};

/// Every check the driver runs, in its order: a name missing from the
/// console fails the run as surely as a FAIL line.
pub(crate) const CHECKS: &[&str] = &[
    "install",
    "reload",
    "restart_chain",
    "watchdog",
    "journal_fields",
    "journal_storm",
    "upgrade",
    "security",
    "dynamic_user",
    "sandbox_setup_quiet",
    "purge",
];

/// What the root holds besides debootstrap's minimal base: systemd as
/// init, nss-systemd (DynamicUser names), dbus (systemctl and
/// systemd-analyze talk to systemd over it), procps (the package's
/// dependency) and strace (the tests' tracer).
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "libnss-systemd",
    "dbus",
    "procps",
    "strace",
];

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";

/// Size of the root image; files are sparse, so unused space costs nothing.
const IMAGE_MIB: u64 = 2048;

/// The driver and its unit, copied into the root at each boot.
const DRIVER: &str = include_str!("../systemd/driver.sh");
const DRIVER_UNIT: &str = include_str!("../systemd/debugmon-systemd-test.service");

/// journald's rate limit for every unit without its own setting, far
/// lower than the default (10,000 messages per 30 s) which an exec storm
/// on an emulated CPU never reaches: under this one, the storm shows that
/// the unit's own limit (`LogRateLimitBurst=`) keeps every record.
const JOURNALD_LIMIT: &str = "# cargo xtask systemd-test: a rate limit the storm exceeds.\n\
                              [Journal]\nRateLimitIntervalSec=30s\nRateLimitBurst=20\n";

/// The modules, in load order, that give the cloud kernel (virtio-blk as a
/// module, ext4 built in) its root disk. A block device rather than 9p or
/// virtiofs: the tests need a real filesystem under /var/lib (dpkg,
/// journald) and the image boots without a host-side daemon.
const MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
];

/// The image's identity: when the package list changes, the cache is stale.
fn stamp() -> String {
    format!("{SUITE} {MIRROR} {}\n", PACKAGES.join(","))
}

/// Files the root gets before it is imaged: a quiet console (no getty on
/// the serial line the results go to) and a journal large enough for the
/// storm, so rotation cannot pass for rate-limit loss.
fn customise(r: &Path) -> Result<()> {
    let sys = r.join("etc/systemd/system");
    fs::create_dir_all(&sys)?;
    for unit in ["serial-getty@ttyS0.service", "getty@tty1.service"] {
        let link = sys.join(unit);
        if fs::symlink_metadata(&link).is_err() {
            symlink("/dev/null", &link)?;
        }
    }
    let jd = r.join("etc/systemd/journald.conf.d");
    fs::create_dir_all(&jd)?;
    fs::write(
        jd.join("50-debugmon-test.conf"),
        "# The VM's journal lives in /run; big enough for the exec storm.\n\
         [Journal]\nStorage=volatile\nRuntimeMaxUse=512M\n",
    )?;
    fs::write(r.join("etc/hostname"), "debugmon-systemd\n")?;
    // Empty: systemd makes a machine id at each boot.
    fs::write(r.join("etc/machine-id"), "")?;
    fs::write(r.join("etc/fstab"), "/dev/vda / ext4 rw 0 1\n")?;
    Ok(())
}

/// Builds the root image once (debootstrap, then `mkfs.ext4 -d`); later
/// runs reuse it while [`stamp`] matches.
fn image(dir: &Path) -> Result<PathBuf> {
    let img = dir.join("systemd-root.ext4");
    let stamp_path = dir.join("systemd-root.stamp");
    if img.exists() && fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp()) {
        return Ok(img);
    }
    let tree = dir.join("systemd-root");
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    let started = Instant::now();
    eprintln!("xtask: building the Debian {SUITE} root with debootstrap (once)");
    sh(Command::new("debootstrap")
        .args(["--variant=minbase", "--include"])
        .arg(PACKAGES.join(","))
        .arg(SUITE)
        .arg(&tree)
        .arg(MIRROR))
    .context("debootstrap (needs the network to reach Debian's mirror)")?;
    // Downloaded packages are not needed in the image.
    let cache = tree.join("var/cache/apt/archives");
    if let Ok(rd) = fs::read_dir(&cache) {
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "deb") {
                fs::remove_file(e.path())?;
            }
        }
    }
    customise(&tree)?;
    let _ = fs::remove_file(&img);
    fs::File::create(&img)?.set_len(IMAGE_MIB << 20)?;
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "debugmon-root", "-d"])
        .arg(&tree)
        .arg(&img))?;
    fs::remove_dir_all(&tree)?;
    fs::write(&stamp_path, stamp())?;
    eprintln!(
        "xtask: root image built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(img)
}

/// The initramfs: busybox loads the virtio modules, mounts the root disk,
/// copies this run's files into it and hands over to systemd.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m || echo "initramfs: insmod $m failed"; done
i=0
while [ ! -b /dev/vda ]; do
  i=$((i+1)); if [ $i -gt 600 ]; then echo "SYSTEMD-TEST FAIL boot: no /dev/vda"; poweroff -f; fi
  sleep 0.1
done
mkdir -p /newroot
mount -t ext4 -o rw /dev/vda /newroot || { echo "SYSTEMD-TEST FAIL boot: mount /dev/vda"; poweroff -f; }
cp -a /payload/. /newroot/
umount /proc /sys /dev
exec switch_root /newroot /lib/systemd/systemd
"#;

fn build_initramfs(dir: &Path, kdir: &Path, old: &Path, new: &Path) -> Result<PathBuf> {
    let r = dir.join("systemd-initramfs");
    if r.exists() {
        fs::remove_dir_all(&r)?;
    }
    for d in ["bin", "proc", "sys", "dev", "modules", "newroot"] {
        fs::create_dir_all(r.join(d))?;
    }
    fs::copy("/bin/busybox", r.join("bin/busybox")).context("copying /bin/busybox")?;
    let mods = fs::read_dir(kdir.join("lib/modules"))?
        .flatten()
        .next()
        .context("no lib/modules in the kernel package")?
        .path()
        .join("kernel");
    let mut order = String::new();
    for m in MODULES {
        let name = Path::new(m).file_name().context("module name")?;
        fs::copy(mods.join(m), r.join("modules").join(name))
            .with_context(|| format!("copying module {m}"))?;
        order.push_str(&format!("{}\n", name.to_string_lossy()));
    }
    fs::write(r.join("modules/order"), order)?;
    let t = r.join("payload/opt/debugmon-test");
    fs::create_dir_all(&t)?;
    fs::copy(old, t.join("debugmon-old.deb"))?;
    fs::copy(new, t.join("debugmon-new.deb"))?;
    fs::write(t.join("driver.sh"), DRIVER)?;
    fs::set_permissions(t.join("driver.sh"), fs::Permissions::from_mode(0o755))?;
    fs::write(
        t.join("max-exposure"),
        format!("{}\n", dist_checks::MAX_EXPOSURE),
    )?;
    let jd = r.join("payload/etc/systemd/journald.conf.d");
    fs::create_dir_all(&jd)?;
    fs::write(jd.join("60-debugmon-test-ratelimit.conf"), JOURNALD_LIMIT)?;
    let sys = r.join("payload/etc/systemd/system");
    fs::create_dir_all(sys.join("multi-user.target.wants"))?;
    fs::write(sys.join("debugmon-systemd-test.service"), DRIVER_UNIT)?;
    symlink(
        "../debugmon-systemd-test.service",
        sys.join("multi-user.target.wants/debugmon-systemd-test.service"),
    )?;
    let init = r.join("init");
    fs::write(&init, INIT)?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let out = dir.join("systemd-initramfs.cpio.gz");
    let script = format!(
        "cd {} && find . | cpio -o -H newc --quiet | gzip -1 > {}",
        r.display(),
        out.display()
    );
    sh(Command::new("sh").args(["-c", &script]))?;
    Ok(out)
}

/// Outcome of a boot: the checks that passed and failed, with their text.
#[derive(Default)]
struct Outcome {
    passed: Vec<String>,
    failed: Vec<String>,
    done: bool,
}

fn boot(vmlinuz: &Path, initrd: &Path, img: &Path) -> Result<Outcome> {
    let _lock = crate::privlock::PrivLock::take()?;
    // snapshot=on: the VM writes to a temporary overlay, so the cached
    // image stays as debootstrap left it.
    let drive = format!("file={},format=raw,if=virtio,snapshot=on", img.display());
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-m", "3072", "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-drive", &drive])
        .args([
            "-append",
            "console=ttyS0 panic=-1 quiet lsm=lockdown,capability,landlock,yama,bpf",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let mut o = Outcome::default();
    crate::console::follow(
        &mut child,
        "systemd-vm",
        Duration::from_secs(40 * 60),
        |line| {
            // Kernel messages may share the line: look for the marker
            // anywhere.
            if let Some(i) = line.find("SYSTEMD-TEST ") {
                let rest = &line[i + 13..];
                if let Some(p) = rest.strip_prefix("PASS ") {
                    o.passed.push(p.to_owned());
                } else if let Some(f) = rest.strip_prefix("FAIL ") {
                    o.failed.push(f.to_owned());
                } else if rest.starts_with("DONE") {
                    o.done = true;
                }
            }
        },
    )?;
    Ok(o)
}

/// The root image, built now if it is missing or stale: `cargo xtask test`
/// starts this early beside the builds, since debootstrap mostly waits on
/// the mirror and dpkg (44 s on a fresh clone).
pub(crate) fn prepare_image() -> Result<PathBuf> {
    let dir = root().join("target/vm");
    fs::create_dir_all(&dir)?;
    image(&dir)
}

/// Builds what the VM needs, boots it and judges the console.
pub(crate) fn systemd_test() -> Result<usize> {
    let started = Instant::now();
    let dir = root().join("target/vm");
    fs::create_dir_all(&dir)?;
    let vmlinuz = vm::kernel(&dir)?;
    let img = image(&dir)?;
    let (old, new) = dist::build_pair()?;
    let initrd = build_initramfs(&dir, &dir.join("kernel"), &old, &new)?;
    let o = boot(&vmlinuz, &initrd, &img)?;
    eprintln!();
    eprintln!("systemd tests (Debian 12, systemd as PID 1, BPF-LSM):");
    for p in &o.passed {
        eprintln!("  PASS {p}");
    }
    for f in &o.failed {
        eprintln!("  FAIL {f}");
    }
    let first_word = |s: &String| s.split([' ', ':']).next().unwrap_or_default().to_owned();
    let missing: Vec<&str> = CHECKS
        .iter()
        .copied()
        .filter(|c| {
            !o.passed
                .iter()
                .chain(&o.failed)
                .any(|l| first_word(l) == *c)
        })
        .collect();
    eprintln!(
        "systemd: {} passed, {} failed, {} did not run, in {:.0} s",
        o.passed.len(),
        o.failed.len(),
        missing.len(),
        started.elapsed().as_secs_f64()
    );
    if !o.failed.is_empty() {
        bail!("systemd VM checks failed: {:?}", o.failed);
    }
    if !missing.is_empty() || !o.done {
        bail!(
            "the systemd VM did not run every check (missing: {missing:?}, finished: {}); see the console above",
            o.done
        );
    }
    Ok(o.passed.len())
}
