//! `cargo xtask dist-test`: builds the .deb and installs it with the real
//! dpkg into a fresh root (`dpkg --root`, its own dpkg database). The
//! maintainer scripts run chrooted there, with busybox as /bin/sh and
//! recording stand-ins for systemctl, deb-systemd-helper and
//! deb-systemd-invoke, under a /run/systemd/system that says "systemd is
//! running". Checks: lintian (no errors or warnings), files and modes, the
//! conffile (registered, and kept when modified across a reinstall), the
//! shipped policies with a site override, the scripts' systemd calls on
//! install, remove and purge, `config check` of the installed config with
//! a drop-in, `systemd-analyze verify` of the installed unit and its
//! exposure score. Needs root (chroot).

use std::{
    fs,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::Path,
    process::Command,
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    dist, dist_checks,
    dist_meta::PACKAGE,
    shell::{is_root, root, sh},
};

/// Where the stand-ins record their arguments, inside the fresh root.
const LOG: &str = "fake-systemd.log";

const FAKE: &str = "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> /fake-systemd.log\nexit 0\n";

/// Busybox applets the maintainer scripts use.
const APPLETS: &[&str] = &[
    "sh", "mkdir", "chmod", "rm", "cat", "echo", "test", "[", "basename",
];

fn write_exec(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// A root with an empty dpkg database, a shell, and the stand-ins.
fn fresh_root(r: &Path) -> Result<()> {
    if r.exists() {
        fs::remove_dir_all(r).with_context(|| format!("removing {}", r.display()))?;
    }
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "bin",
        "usr/bin",
        "usr/sbin",
        "sbin",
        "tmp",
        "dev",
        "run/systemd/system",
    ] {
        fs::create_dir_all(r.join(d))?;
    }
    // The scripts redirect to /dev/null, as every maintainer script does.
    sh(Command::new("mknod")
        .args(["-m", "666"])
        .arg(r.join("dev/null"))
        .args(["c", "1", "3"]))?;
    fs::write(r.join("var/lib/dpkg/status"), "")?;
    fs::write(r.join("var/lib/dpkg/available"), "")?;
    let busybox = Path::new("/bin/busybox");
    ensure!(
        busybox.exists(),
        "/bin/busybox is missing: install busybox-static (cargo xtask setup)"
    );
    fs::copy(busybox, r.join("bin/busybox"))?;
    for a in APPLETS {
        symlink("busybox", r.join("bin").join(a))?;
    }
    for fake in ["systemctl", "deb-systemd-helper", "deb-systemd-invoke"] {
        write_exec(&r.join("usr/bin").join(fake), FAKE)?;
    }
    // The unit's ExecReload names /bin/systemctl (where Debian 12's systemd
    // ships it), which `systemd-analyze verify` looks for in the root.
    write_exec(&r.join("bin/systemctl"), FAKE)?;
    // dpkg insists on finding these on PATH inside the root; nothing here
    // uses them.
    for tool in ["ldconfig", "start-stop-daemon"] {
        write_exec(&r.join("sbin").join(tool), "#!/bin/sh\nexit 0\n")?;
    }
    Ok(())
}

fn dpkg(r: &Path, args: &[&str]) -> Result<()> {
    sh(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        // The fresh root has no libc6 package to satisfy Depends; the
        // binary itself runs against the host's libc below.
        .args(["--force-depends", "--force-confold", "--force-confdef"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The stand-ins' record so far, then cleared.
fn take_log(r: &Path) -> Result<String> {
    let p = r.join(LOG);
    let text = fs::read_to_string(&p).unwrap_or_default();
    let _ = fs::remove_file(&p);
    Ok(text)
}

fn mode(p: &Path) -> Result<u32> {
    Ok(fs::symlink_metadata(p)
        .with_context(|| format!("{} is not installed", p.display()))?
        .permissions()
        .mode()
        & 0o7777)
}

fn expect_calls(log: &str, calls: &[&str], when: &str) -> Result<()> {
    for c in calls {
        ensure!(
            log.lines().any(|l| l == *c),
            "{when}: expected `{c}` from the maintainer scripts; they ran:\n{log}"
        );
    }
    Ok(())
}

/// systemd's own check of the installed unit, resolved inside the fresh
/// root: ExecStart must find /usr/bin/debugmon there. The units it depends
/// on (sysinit.target, sys-kernel-tracing.mount, ...) are the host's, copied
/// in. Warnings fail too: systemd only warns about an unknown directive.
fn verify_unit(r: &Path) -> Result<()> {
    let units = r.join("usr/lib/systemd/system");
    fs::create_dir_all(&units)?;
    sh(Command::new("cp")
        .args(["-a", "/lib/systemd/system/."])
        .arg(&units))
    .context("copying the host's systemd units into the test root")?;
    let c = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", r.display()))
        .arg("debugmon.service")
        .output()
        .context("running systemd-analyze verify")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&c.stdout),
        String::from_utf8_lossy(&c.stderr)
    );
    ensure!(
        c.status.success() && said.trim().is_empty(),
        "systemd-analyze verify of the installed unit ({}):\n{said}",
        c.status
    );
    Ok(())
}

/// The shipped policies load; a site file of the same name replaces the
/// shipped one (`policy check` of both directories, as the agent loads
/// them, sees no duplicate rules and the site's rule count).
fn site_policy_override(r: &Path, bin: &Path) -> Result<()> {
    let check = || -> Result<String> {
        let o = Command::new(bin)
            .args(["policy", "check"])
            .arg(r.join("usr/share/debugmon/policies"))
            .arg(r.join("etc/debugmon/policies.d"))
            .output()?;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        ensure!(
            o.status.success(),
            "`debugmon policy check` of the installed policies:\n{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(out)
    };
    let rules = |out: &str| -> Option<usize> {
        out.lines().find_map(|l| {
            l.strip_prefix("ok: ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    };
    let shipped = rules(&check()?).context("policy check printed no rule count")?;
    let site = r.join("etc/debugmon/policies.d/40-perf-bpf.yaml");
    fs::write(
        &site,
        "rules:\n  - { name: site-perf, on: [exec], action: alert }\n",
    )?;
    let with_site = rules(&check()?).context("policy check printed no rule count")?;
    fs::remove_file(&site)?;
    ensure!(
        with_site < shipped,
        "a site 40-perf-bpf.yaml did not replace the shipped one ({shipped} -> {with_site} rules)"
    );
    Ok(())
}

pub(crate) fn dist_test() -> Result<()> {
    if !is_root() {
        bail!("dist-test installs into a chroot with dpkg --root: run it as root");
    }
    let deb = dist::build()?;
    let deb_s = deb.to_str().context("non-UTF-8 .deb path")?;
    dist_checks::lintian(&deb)?;
    let r = root().join("target/dist-test/root");
    fresh_root(&r)?;

    dpkg(&r, &["-i", deb_s]).context("installing the .deb into a fresh root")?;
    for (path, want) in [
        ("usr/bin/debugmon", 0o755),
        ("lib/systemd/system/debugmon.service", 0o644),
        ("etc/debugmon/config.toml", 0o600),
        ("etc/debugmon/policies.d", 0o755),
        ("etc/debugmon/config.d", 0o755),
        ("usr/share/debugmon/policies/20-protected.yaml", 0o644),
        ("var/lib/debugmon", 0o700),
        ("usr/share/doc/debugmon/README.md", 0o644),
        ("usr/share/man/man1/debugmon.1.gz", 0o644),
        ("usr/share/man/man1/debugmon-policy-list.1.gz", 0o644),
        ("usr/share/bash-completion/completions/debugmon", 0o644),
        ("usr/share/zsh/vendor-completions/_debugmon", 0o644),
        ("usr/share/fish/vendor_completions.d/debugmon.fish", 0o644),
        ("usr/share/doc/debugmon/examples/50-nats-tls.toml", 0o644),
        ("usr/share/debugmon/grafana/debugmon.json", 0o644),
        ("usr/share/debugmon/prometheus/debugmon.rules.yml", 0o644),
        ("usr/share/doc/debugmon/copyright", 0o644),
        ("usr/share/doc/debugmon/changelog.Debian.gz", 0o644),
    ] {
        let got = mode(&r.join(path))?;
        ensure!(got == want, "/{path}: mode {got:o}, expected {want:o}");
    }
    let log = take_log(&r)?;
    expect_calls(
        &log,
        &[
            "deb-systemd-helper enable debugmon.service",
            "systemctl --system daemon-reload",
            "deb-systemd-invoke start debugmon.service",
        ],
        "install",
    )?;

    let q = Command::new("dpkg-query")
        .arg(format!("--admindir={}", r.join("var/lib/dpkg").display()))
        .args(["-W", "-f=${Status}\n${Conffiles}\n", PACKAGE])
        .output()
        .context("dpkg-query")?;
    let q = String::from_utf8_lossy(&q.stdout);
    ensure!(q.starts_with("install ok installed"), "dpkg-query: {q}");
    ensure!(
        q.contains(" /etc/debugmon/config.toml "),
        "config.toml is not a registered conffile:\n{q}"
    );

    ensure!(
        q.lines()
            .filter(|l| l.trim_start().starts_with('/'))
            .count()
            == 1,
        "only config.toml may be a conffile (policies update with the package):\n{q}"
    );

    // The installed binary checks the installed config, with a drop-in.
    let bin = r.join("usr/bin/debugmon");
    fs::write(
        r.join("etc/debugmon/config.d/50-site.toml"),
        "[agent]\nring_mib = 16\n",
    )?;
    let shown = Command::new(&bin)
        .args(["config", "check", "--config"])
        .arg(r.join("etc/debugmon/config.toml"))
        .output()?;
    ensure!(
        shown.status.success() && String::from_utf8_lossy(&shown.stdout).contains("ring_mib = 16"),
        "`debugmon config check` of the shipped config with a drop-in:\n{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    fs::remove_file(r.join("etc/debugmon/config.d/50-site.toml"))?;
    site_policy_override(&r, &bin)?;

    verify_unit(&r)?;
    let score = dist_checks::exposure(&r.join("lib/systemd/system/debugmon.service"), &r)?;
    println!("dist-test: systemd-analyze security exposure {score}");

    // An admin's edit survives a reinstall (dpkg keeps a modified conffile).
    let cfg = r.join("etc/debugmon/config.toml");
    let edited = fs::read_to_string(&cfg)? + "# edited by the admin\n";
    fs::write(&cfg, &edited)?;
    dpkg(&r, &["-i", deb_s]).context("reinstalling the .deb")?;
    ensure!(
        fs::read_to_string(&cfg)? == edited,
        "reinstall overwrote the admin's config.toml"
    );
    expect_calls(
        &take_log(&r)?,
        &["deb-systemd-invoke restart debugmon.service"],
        "reinstall",
    )?;

    dpkg(&r, &["-r", PACKAGE]).context("removing the package")?;
    ensure!(
        !r.join("usr/bin/debugmon").exists(),
        "remove left the binary"
    );
    ensure!(cfg.exists(), "remove deleted the conffile (only purge may)");
    expect_calls(
        &take_log(&r)?,
        &[
            "deb-systemd-invoke stop debugmon.service",
            "deb-systemd-helper mask debugmon.service",
        ],
        "remove",
    )?;

    dpkg(&r, &["-P", PACKAGE]).context("purging the package")?;
    ensure!(!cfg.exists(), "purge left config.toml");
    ensure!(
        !r.join("var/lib/debugmon").exists(),
        "purge left /var/lib/debugmon"
    );
    expect_calls(
        &take_log(&r)?,
        &["deb-systemd-helper purge debugmon.service"],
        "purge",
    )?;

    fs::remove_dir_all(&r).context("removing the test root")?;
    println!(
        "dist-test: {} installs, reinstalls, removes and purges cleanly",
        deb.display()
    );
    Ok(())
}
