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
    ffi::{OsStr, OsString},
    fs,
    os::unix::{
        ffi::{OsStrExt as _, OsStringExt as _},
        process::CommandExt as _,
    },
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
    /// Starts `cmds`, one after the other while each succeeds, under
    /// `chrt --idle 0`, their output to a log file.
    pub(crate) fn start(name: &'static str, cmds: &[Command]) -> Result<Self> {
        let dir = root().join("target/xtask-logs");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join(format!("prebuild-{name}.log"));
        let out = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let script = cmds
            .iter()
            .map(shell_line)
            .collect::<Vec<_>>()
            .join(OsStr::new(" && "));
        let mut idle = Command::new("chrt");
        idle.args(["--idle", "0", "sh", "-c"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().context("log handle")?))
            .stderr(Stdio::from(out))
            // Its own group, so that dropping it can stop cargo's rustc
            // children along with cargo.
            .process_group(0);
        let shown: Vec<String> = cmds.iter().map(show).collect();
        eprintln!(
            "xtask: background build {name} (idle priority, log {}): {}",
            log.display(),
            shown.join(" && ")
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

/// `c` as one line of `sh`: its directory, environment and arguments
/// quoted, so that nothing in them is read as shell syntax.
fn shell_line(c: &Command) -> OsString {
    let dir = c.get_current_dir().map_or_else(root, PathBuf::from);
    let mut words = vec![
        OsString::from("cd"),
        quote(dir.as_os_str()),
        "&&".into(),
        "env".into(),
    ];
    // env's options (the removals) before its assignments.
    for (k, v) in c.get_envs() {
        if v.is_none() {
            words.extend(["-u".into(), quote(k)]);
        }
    }
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            let mut kv = k.to_os_string();
            kv.push("=");
            kv.push(v);
            words.push(quote(&kv));
        }
    }
    words.push(quote(c.get_program()));
    words.extend(c.get_args().map(quote));
    words.join(OsStr::new(" "))
}

/// Single-quoted for `sh`; a quote inside becomes `'\''`.
fn quote(s: &OsStr) -> OsString {
    let mut q = b"'".to_vec();
    for &b in s.as_bytes() {
        if b == b'\'' {
            q.extend_from_slice(br"'\''");
        } else {
            q.push(b);
        }
    }
    q.push(b'\'');
    OsString::from_vec(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_runs_the_same_as_one_quoted_shell_line() {
        let dir = std::env::temp_dir();
        let mut c = Command::new("sh");
        c.current_dir(&dir)
            .args([
                "-c",
                r#"printf '%s|%s|%s|%s' "$A" "${B-unset}" "$(pwd)" "$0""#,
                "it's",
            ])
            .env("A", "1 $x `y`")
            .env_remove("B");
        let o = Command::new("sh")
            .arg("-c")
            .arg(shell_line(&c))
            .env("B", "set")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("1 $x `y`|unset|{}|it's", dir.display())
        );
    }
}
