//! The kernel settings that decide who may debug whom: Yama's
//! `ptrace_scope`, `perf_event_paranoid`, unprivileged BPF, `kptr_restrict`,
//! `core_pattern`, `suid_dumpable`, the lockdown mode and whether BPF-LSM
//! is among the active security modules. A file the kernel does not have
//! (no Yama, no securityfs) is `null`, not an error; one it has but that
//! cannot be read is counted as skipped.

use std::path::Path;

use serde::Serialize;

/// The settings; `None`: the kernel does not have the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KernelSettings {
    /// `kernel.yama.ptrace_scope`: 0 classic (any process of the same
    /// user), 1 descendants only, 2 admin only, 3 no attach at all.
    pub ptrace_scope: Option<i64>,
    /// `kernel.perf_event_paranoid`: below 2 lets users profile the kernel
    /// or other processes.
    pub perf_event_paranoid: Option<i64>,
    /// `kernel.unprivileged_bpf_disabled`: 0 lets every user load BPF.
    pub unprivileged_bpf_disabled: Option<i64>,
    /// `kernel.kptr_restrict`: 0 shows kernel addresses to everyone.
    pub kptr_restrict: Option<i64>,
    /// `kernel.core_pattern`: where cores go (a file, or `|program`).
    pub core_pattern: Option<String>,
    /// `fs.suid_dumpable`: not 0 lets set-uid programs dump core.
    pub suid_dumpable: Option<i64>,
    /// The selected lockdown mode (`none`, `integrity`, `confidentiality`).
    pub lockdown: Option<String>,
    /// The active security modules, in order (`/sys/kernel/security/lsm`).
    pub lsm: Option<Vec<String>>,
    /// BPF-LSM is active: the agent can refuse in the kernel.
    pub bpf_lsm: Option<bool>,
}

impl KernelSettings {
    /// Reads the settings under `proc_root`/sys and `security` (the
    /// securityfs mount, `/sys/kernel/security`).
    pub fn read(proc_root: &Path, security: &Path, skipped: &mut u64) -> Self {
        let mut text = |p: &Path| -> Option<String> {
            match std::fs::read_to_string(p) {
                Ok(t) => Some(t.trim_end_matches('\n').to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(_) => {
                    *skipped += 1;
                    None
                }
            }
        };
        let sys = proc_root.join("sys");
        let ptrace_scope = text(&sys.join("kernel/yama/ptrace_scope"));
        let perf = text(&sys.join("kernel/perf_event_paranoid"));
        let bpf = text(&sys.join("kernel/unprivileged_bpf_disabled"));
        let kptr = text(&sys.join("kernel/kptr_restrict"));
        let core_pattern = text(&sys.join("kernel/core_pattern"));
        let suid = text(&sys.join("fs/suid_dumpable"));
        let lockdown = text(&security.join("lockdown"));
        let lsm = text(&security.join("lsm")).map(|t| parse_lsm(&t));
        Self {
            ptrace_scope: ptrace_scope.as_deref().and_then(parse_int),
            perf_event_paranoid: perf.as_deref().and_then(parse_int),
            unprivileged_bpf_disabled: bpf.as_deref().and_then(parse_int),
            kptr_restrict: kptr.as_deref().and_then(parse_int),
            core_pattern,
            suid_dumpable: suid.as_deref().and_then(parse_int),
            lockdown: lockdown.as_deref().and_then(parse_lockdown),
            bpf_lsm: lsm.as_ref().map(|l| l.iter().any(|m| m == "bpf")),
            lsm,
        }
    }

    /// What in these settings widens who may debug whom, as policy names
    /// it (docs/records.md, `inventory`).
    pub fn findings(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        // Without Yama the kernel applies the classic rule.
        if self.ptrace_scope.unwrap_or(0) == 0 {
            out.push("ptrace_scope:classic");
        }
        if self.perf_event_paranoid.is_some_and(|v| v < 2) {
            out.push("perf_event_paranoid:permissive");
        }
        if self.unprivileged_bpf_disabled == Some(0) {
            out.push("unprivileged_bpf");
        }
        if self.kptr_restrict == Some(0) {
            out.push("kptr_restrict:off");
        }
        if self.suid_dumpable.is_some_and(|v| v != 0) {
            out.push("suid_dumpable");
        }
        if self.lockdown.as_deref().is_none_or(|m| m == "none") {
            out.push("lockdown:none");
        }
        if self.bpf_lsm != Some(true) {
            out.push("bpf_lsm:unavailable");
        }
        out
    }
}

/// A sysctl's integer (`2`, or `-1` for perf).
pub fn parse_int(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

/// The selected mode of `/sys/kernel/security/lockdown`:
/// `none [integrity] confidentiality` -> `integrity`.
pub fn parse_lockdown(text: &str) -> Option<String> {
    text.split_ascii_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        .map(str::to_owned)
}

/// `/sys/kernel/security/lsm`: `lockdown,capability,yama,bpf`.
pub fn parse_lsm(text: &str) -> Vec<String> {
    text.trim()
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_lockdown_and_lsm_values() {
        assert_eq!(parse_int("1\n"), Some(1));
        assert_eq!(parse_int("-1"), Some(-1));
        assert_eq!(parse_int("x"), None);
        assert_eq!(
            parse_lockdown("none [integrity] confidentiality\n").as_deref(),
            Some("integrity")
        );
        assert_eq!(
            parse_lockdown("[none] integrity confidentiality").as_deref(),
            Some("none")
        );
        assert_eq!(parse_lockdown("none integrity"), None);
        assert_eq!(
            parse_lsm("lockdown,capability,yama,bpf\n"),
            ["lockdown", "capability", "yama", "bpf"]
        );
    }

    /// A fake /proc/sys and securityfs in a directory.
    fn fixture(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn a_hardened_host_has_no_findings() {
        let d = fixture(&[
            ("proc/sys/kernel/yama/ptrace_scope", "2\n"),
            ("proc/sys/kernel/perf_event_paranoid", "3\n"),
            ("proc/sys/kernel/unprivileged_bpf_disabled", "2\n"),
            ("proc/sys/kernel/kptr_restrict", "1\n"),
            (
                "proc/sys/kernel/core_pattern",
                "|/lib/systemd/systemd-coredump %P\n",
            ),
            ("proc/sys/fs/suid_dumpable", "0\n"),
            ("sec/lockdown", "none [integrity] confidentiality\n"),
            ("sec/lsm", "lockdown,capability,yama,bpf\n"),
        ]);
        let mut skipped = 0;
        let k = KernelSettings::read(&d.path().join("proc"), &d.path().join("sec"), &mut skipped);
        assert_eq!(skipped, 0);
        assert_eq!(k.ptrace_scope, Some(2));
        assert_eq!(
            k.core_pattern.as_deref(),
            Some("|/lib/systemd/systemd-coredump %P")
        );
        assert_eq!(k.lockdown.as_deref(), Some("integrity"));
        assert_eq!(k.bpf_lsm, Some(true));
        assert!(k.findings().is_empty(), "{:?}", k.findings());
    }

    #[test]
    fn a_permissive_host_and_missing_files() {
        let d = fixture(&[
            ("proc/sys/kernel/perf_event_paranoid", "-1\n"),
            ("proc/sys/kernel/unprivileged_bpf_disabled", "0\n"),
            ("proc/sys/kernel/kptr_restrict", "0\n"),
            ("proc/sys/fs/suid_dumpable", "2\n"),
            ("sec/lsm", "capability,yama\n"),
        ]);
        let mut skipped = 0;
        let k = KernelSettings::read(&d.path().join("proc"), &d.path().join("sec"), &mut skipped);
        assert_eq!(skipped, 0, "absent files are not unreadable ones");
        assert_eq!(k.ptrace_scope, None, "no Yama");
        assert_eq!(k.lockdown, None);
        assert_eq!(k.bpf_lsm, Some(false));
        assert_eq!(
            k.findings(),
            [
                "ptrace_scope:classic",
                "perf_event_paranoid:permissive",
                "unprivileged_bpf",
                "kptr_restrict:off",
                "suid_dumpable",
                "lockdown:none",
                "bpf_lsm:unavailable",
            ]
        );
    }

    #[test]
    fn an_unreadable_setting_is_counted() {
        // A directory where a file should be cannot be read as text.
        let d = fixture(&[("proc/sys/kernel/kptr_restrict/x", "")]);
        let mut skipped = 0;
        let k = KernelSettings::read(&d.path().join("proc"), &d.path().join("sec"), &mut skipped);
        assert_eq!(skipped, 1);
        assert_eq!(k.kptr_restrict, None);
    }
}
