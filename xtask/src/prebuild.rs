//! Builds that later stages of `cargo xtask test` need, started early in
//! the background under `SCHED_IDLE`, so they run on the CPU the
//! foreground leaves idle (the privileged suites keep about a quarter of
//! the two cores busy for minutes; test binaries wait on the kernel, the
//! agent and nats-server). The idle class runs only when nothing else
//! wants the CPU, so the foreground's timing is not taxed for it.
//!
//! A prebuild only warms a build directory: the stage that needs the
//! build runs the same cargo command in the foreground afterwards (a no-op
//! when the prebuild finished), and that command is what reports an error.
//! So a prebuild that fails or is cut short changes nothing but time.

use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result};

use crate::shell::{root, show};

/// A build running in the background, in its own process group.
pub(crate) struct Prebuild {
    name: &'static str,
    child: Option<Child>,
    started: Instant,
    log: PathBuf,
}

impl Prebuild {
    /// Starts `c` under `chrt --idle 0`, its output to a log file.
    pub(crate) fn start(name: &'static str, c: &Command) -> Result<Self> {
        let dir = root().join("target/xtask-logs");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join(format!("prebuild-{name}.log"));
        let out = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut idle = Command::new("chrt");
        idle.args(["--idle", "0"])
            .arg(c.get_program())
            .args(c.get_args())
            .current_dir(c.get_current_dir().map_or_else(root, PathBuf::from))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().context("log handle")?))
            .stderr(Stdio::from(out))
            // Its own group, so that dropping it can stop cargo's rustc
            // children along with cargo.
            .process_group(0);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => idle.env(k, v),
                None => idle.env_remove(k),
            };
        }
        eprintln!(
            "xtask: background build {name} (idle priority, log {}): {}",
            log.display(),
            show(c)
        );
        let child = idle
            .spawn()
            .with_context(|| format!("starting background build {name}"))?;
        Ok(Self {
            name,
            child: Some(child),
            started: Instant::now(),
            log,
        })
    }

    /// Waits for the build to end and says how it went; its failure is
    /// only reported, since the foreground build that follows repeats it.
    pub(crate) fn join(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let waited = Instant::now();
        let ended_before = matches!(child.try_wait(), Ok(Some(_)));
        match child.wait() {
            Ok(st) if st.success() => eprintln!(
                "xtask: background build {} {}",
                self.name,
                if ended_before {
                    "had ended before it was needed".to_owned()
                } else {
                    format!(
                        "done {:.0?} after its start; waited {:.0?} for it",
                        self.started.elapsed(),
                        waited.elapsed()
                    )
                }
            ),
            Ok(st) => eprintln!(
                "xtask: background build {} failed ({st}; log {}): the foreground build repeats it",
                self.name,
                self.log.display()
            ),
            Err(e) => eprintln!(
                "xtask: background build {}: waiting failed ({e}): the foreground build repeats it",
                self.name
            ),
        }
    }
}

impl Drop for Prebuild {
    /// A run that fails early leaves no build behind it.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: plain syscall; the group is the one `start` made.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = child.wait();
        }
    }
}
