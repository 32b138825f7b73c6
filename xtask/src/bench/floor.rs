//! The kernel's share of the overhead, measured alone: while any
//! `syscalls/sys_*` tracepoint has a user, every syscall of every process
//! takes the kernel's syscall-tracing path, whether or not that syscall is
//! traced. debugmon's syscall hooks are such tracepoints wherever the
//! kernel refuses BPF trampolines (this host). Enabling the ftrace event of
//! one syscall that neither workload makes (`acct`, entry and exit; not
//! `ptrace`, which the strace workload makes) turns that path on with no
//! BPF program and no agent: the ratio in this mode is the floor no agent
//! can go below on such a kernel.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

const EVENTS: [&str; 2] = [
    "events/syscalls/sys_enter_acct/enable",
    "events/syscalls/sys_exit_acct/enable",
];

/// The two `acct` syscall events, enabled; put back as found on drop.
pub(crate) struct SyscallTracing {
    restore: Vec<(PathBuf, String)>,
}

fn tracefs() -> Option<&'static Path> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join(EVENTS[0]).exists())
}

impl SyscallTracing {
    /// Says why when tracefs or the syscall events are not there.
    pub(crate) fn check() -> Result<()> {
        match tracefs() {
            Some(_) => Ok(()),
            None => bail!(
                "no syscall trace events under /sys/kernel/tracing or /sys/kernel/debug/tracing (tracefs not mounted, or CONFIG_FTRACE_SYSCALLS off)"
            ),
        }
    }

    pub(crate) fn enable() -> Result<Self> {
        let root = tracefs().context("no syscall trace events (see check)")?;
        let mut me = Self {
            restore: Vec::new(),
        };
        for e in EVENTS {
            let path = root.join(e);
            let was = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            std::fs::write(&path, "1")
                .with_context(|| format!("writing 1 to {}", path.display()))?;
            me.restore.push((path, plain_state(&was)));
        }
        Ok(me)
    }
}

/// An `enable` file's state as it can be written back: it reads `0*` or
/// `1*` while a trigger holds the event in soft mode.
fn plain_state(read: &str) -> String {
    if read.trim_start().starts_with('1') {
        "1".to_owned()
    } else {
        "0".to_owned()
    }
}

/// Switches off the events a bench that was interrupted (Ctrl-C skips the
/// restore) left on, which would keep every syscall of the host on the
/// tracing path, and says so.
pub(crate) fn reset_leftover() {
    let Some(root) = tracefs() else { return };
    for e in EVENTS {
        let path = root.join(e);
        let on = std::fs::read_to_string(&path).is_ok_and(|s| plain_state(&s) == "1");
        if on {
            eprintln!(
                "bench: {} was left on (an interrupted bench?); switching it off",
                path.display()
            );
            if let Err(err) = std::fs::write(&path, "0") {
                eprintln!("bench: could not switch off {}: {err}", path.display());
            }
        }
    }
}

impl Drop for SyscallTracing {
    fn drop(&mut self) {
        for (path, was) in &self.restore {
            if let Err(e) = std::fs::write(path, was) {
                eprintln!("bench: could not restore {} to {was}: {e}", path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::plain_state;

    #[test]
    fn soft_mode_states_are_written_back_plain() {
        assert_eq!(plain_state("1\n"), "1");
        assert_eq!(plain_state("1*\n"), "1");
        assert_eq!(plain_state("0*\n"), "0");
        assert_eq!(plain_state("0\n"), "0");
    }
}
