//! auditd as the peer to compare against: started in the foreground as our
//! own child, one rule (`-a always,exit -F arch=b64 -S execve`), and on drop
//! the rule deleted, auditing switched back to what it was, and the daemon
//! stopped by its pid. If the kernel refuses audit (no CONFIG_AUDIT, or a
//! container without CAP_AUDIT_CONTROL), `start` says why instead.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

pub(crate) struct Auditd {
    child: Child,
    was_enabled: String,
    was_backlog: String,
}

fn auditctl(args: &[&str]) -> Result<String> {
    let o = Command::new("auditctl")
        .args(args)
        .output()
        .context("running auditctl (apt-get install auditd)")?;
    if !o.status.success() {
        bail!(
            "auditctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn status_field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::to_owned))
}

impl Auditd {
    pub(crate) fn start() -> Result<Self> {
        let status = auditctl(&["-s"])?;
        if status_field(&status, "pid").is_some_and(|p| p != "0") {
            bail!("another audit daemon is registered ({status:?}); not touching it");
        }
        let was_enabled = status_field(&status, "enabled").unwrap_or_else(|| "0".into());
        let was_backlog = status_field(&status, "backlog_limit").unwrap_or_else(|| "64".into());
        // -n: stay in the foreground as our child, so we stop it by its pid.
        let child = Command::new("auditd")
            .args(["-n", "-s", "disable"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting auditd")?;
        let mut me = Self {
            child,
            was_enabled,
            was_backlog,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = auditctl(&["-s"])?;
            if status_field(&s, "pid").is_some_and(|p| p != "0") {
                break;
            }
            if me.child.try_wait()?.is_some() || Instant::now() > deadline {
                bail!("auditd did not register with the kernel: {s:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        auditctl(&["-D"])?;
        // A typical production backlog; the default 64 would make execs wait.
        auditctl(&["-b", "8192"])?;
        auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "execve"])?;
        auditctl(&["-e", "1"])?;
        let rules = auditctl(&["-l"])?;
        if !rules.contains("execve") {
            bail!("the execve rule did not stick: {rules:?}");
        }
        Ok(me)
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        let _ = auditctl(&["-D"]);
        let _ = auditctl(&["-e", &self.was_enabled]);
        let _ = auditctl(&["-b", &self.was_backlog]);
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signals the auditd we started, by its pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}
