//! Builds the JSON records of DESIGN.md from enriched events: one object
//! per line, `schema` versioned. Byte strings that are not UTF-8 are
//! rendered reversibly (`\xNN` for each invalid byte, `\\` for a backslash)
//! and the record lists those fields in `detail.escaped`, so nothing is
//! silently replaced.

use std::borrow::Cow;

use agent_common::{AccessKind, Decision};
use serde::Serialize;

use crate::{
    decide::{Decider, PolicyDetail},
    enrich::{Actor, ActorFacts, Enricher, Escapes, Target},
    event::{AccessInfo, ExecInfo},
    host::{Clock, Host},
    names,
    process::ProcessTable,
};

pub const SCHEMA: u32 = 1;

/// Renders bytes as a string; `true` when escaping was needed.
pub fn render(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (Cow::Borrowed(s), false);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if ch == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(ch);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    (Cow::Owned(out), true)
}

/// What the kernel said about the actor of an exec.
fn exec_facts(e: &ExecInfo) -> ActorFacts<'_> {
    ActorFacts {
        pid: e.tgid,
        ppid: e.ppid,
        start_ns: e.start_ns,
        creds: e.creds,
        cgroup_id: e.cgroup_id,
        ns: e.ns,
        comm: &e.comm,
        exe: &e.filename,
        argv: &e.argv,
        tty: &e.tty,
        cwd: e.cwd.as_deref(),
    }
}

/// Fields in key order, like every record struct: the canonical writer
/// streams members that arrive sorted and buffers the rest.
#[derive(Serialize)]
struct Record<'a, D: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<&'a Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'a DecisionOut>,
    detail: D,
    host: &'a Host,
    kind: &'static str,
    monotonic_ns: u64,
    schema: u32,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a Target>,
    time: String,
}

/// DESIGN.md `decision`: what was decided about the action and whether the
/// kernel enforced it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DecisionOut {
    /// allow | alert | deny
    pub action: &'static str,
    /// `"lsm"` (refused with -EPERM before it happened), `"kill"` (the actor
    /// was killed at the syscall's entry) or `null` (not enforced).
    pub enforced: Option<&'static str>,
    pub grant_id: Option<String>,
    pub reason: Option<String>,
    pub rule: Option<String>,
    pub severity: Option<String>,
}

#[derive(Serialize)]
struct ExecDetail {
    /// Size of the whole argv in the process, copied or not.
    argv_bytes: u32,
    argv_truncated: bool,
    /// Debugger class of the program, from the policy's `debuggers:` list.
    #[serde(skip_serializing_if = "Option::is_none")]
    debugger: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    escaped: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    incomplete: Vec<&'static str>,
}

/// Detail of ptrace, mem_access, perf_attach and bpf records.
#[derive(Serialize, Default)]
struct AccessDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    ptrace_request: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<&'static str>,
    /// Present (true) when the open was an io_uring request.
    #[serde(skip_serializing_if = "Option::is_none")]
    io_uring: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    perf_type: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_wide: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prog_type: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prog_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_fd: Option<u64>,
    /// The BPF-LSM hook that refused the action.
    #[serde(skip_serializing_if = "Option::is_none")]
    lsm_hook: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'static str>,
    /// `ok` or the errno name, when the syscall's result is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Cow<'static, str>>,
    /// Calls this record stands for.
    count: u64,
    /// True for a periodic aggregate of repeats after a first record.
    aggregate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_s: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    escaped: Vec<&'static str>,
}

/// Events dropped before they became records, since the previous `lost` record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LostCounts {
    pub exec: u64,
    pub fork: u64,
    pub exit: u64,
    pub access: u64,
    /// Ring buffer items that could not be decoded.
    pub undecodable: u64,
    /// Sealed records shed by the full spool before NATS took them.
    pub spool_shed: u64,
}

impl LostCounts {
    pub fn total(&self) -> u64 {
        self.exec + self.fork + self.exit + self.access + self.undecodable + self.spool_shed
    }
}

#[derive(Serialize)]
struct LostDetail {
    counts: LostCounts,
    total: u64,
    /// Totals since the agent started.
    cumulative: LostCounts,
}

/// The record kind and detail fields of an access.
fn access_detail(a: &AccessInfo) -> (&'static str, AccessDetail) {
    let mut d = AccessDetail {
        count: a.count,
        aggregate: a.aggregate,
        result: a.ret.map(|r| {
            if r < 0 {
                names::errno(-r)
            } else {
                Cow::Borrowed("ok")
            }
        }),
        ..AccessDetail::default()
    };
    let rw = |write: bool| Some(if write { "write" } else { "read" });
    let kind = match a.access {
        AccessKind::Ptrace => {
            d.ptrace_request = Some(names::ptrace_request(a.request));
            "ptrace"
        }
        AccessKind::VmReadv => {
            d.via = Some("process_vm_readv");
            d.access = rw(false);
            "mem_access"
        }
        AccessKind::VmWritev => {
            d.via = Some("process_vm_writev");
            d.access = rw(true);
            "mem_access"
        }
        AccessKind::ProcMem | AccessKind::ProcEnviron => {
            d.via = Some(if a.access == AccessKind::ProcMem {
                "proc_mem"
            } else {
                "proc_environ"
            });
            // O_WRONLY (1) or O_RDWR (2) open for writing.
            d.access = rw(a.request & 3 != 0);
            d.io_uring = a.io_uring.then_some(true);
            "mem_access"
        }
        AccessKind::PidfdGetfd => {
            d.via = Some("pidfd_getfd");
            d.access = Some("fd");
            d.target_fd = Some(a.arg);
            "mem_access"
        }
        AccessKind::PerfOpen => {
            d.perf_type = Some(names::perf_type(a.request));
            let cpu = a.arg as u32 as i32;
            d.cpu = (cpu >= 0).then_some(cpu);
            d.system_wide = Some(a.target_pid == 0);
            "perf_attach"
        }
        AccessKind::BpfProgLoad => {
            d.prog_type = Some(names::bpf_prog_type(a.request));
            "bpf"
        }
        AccessKind::LsmAccess => {
            // The kernel routes attach, process_vm_*, /proc/<pid>/mem and
            // pidfd_getfd through this one check; the syscall's own record
            // (sent at its entry) says which it was.
            d.lsm_hook = Some("ptrace_access_check");
            d.access = Some("attach");
            "ptrace"
        }
        AccessKind::LsmTraceme => {
            d.lsm_hook = Some("ptrace_traceme");
            d.ptrace_request = Some(names::ptrace_request(0));
            "ptrace"
        }
        AccessKind::LsmExec => {
            d.lsm_hook = Some("bprm_check_security");
            "exec"
        }
        AccessKind::LsmKill => {
            d.lsm_hook = Some("task_kill");
            d.signal = Some(a.request as i32);
            d.event = Some("tamper");
            "agent"
        }
        AccessKind::LsmPerf => {
            d.lsm_hook = Some("perf_event_open");
            d.perf_type = Some(names::perf_type(a.request));
            "perf_attach"
        }
        AccessKind::LsmBpf => {
            d.lsm_hook = Some("bpf");
            "bpf"
        }
    };
    (kind, d)
}

/// Numbers records, enriches them and renders them.
pub struct RecordBuilder {
    host: Host,
    clock: Clock,
    seq: u64,
    enricher: Enricher,
    decider: Decider,
    grant_uses: Vec<String>,
    /// Names of the kernel rule slots, for decisions the kernel made.
    rule_names: Vec<String>,
    /// Kind of the last record written, for the per-kind metrics.
    last_kind: &'static str,
}

impl RecordBuilder {
    pub fn new(host: Host, clock: Clock, enricher: Enricher) -> Self {
        Self {
            host,
            clock,
            seq: 0,
            enricher,
            decider: Decider::empty(),
            grant_uses: Vec::new(),
            rule_names: Vec::new(),
            last_kind: "",
        }
    }

    pub fn decider_mut(&mut self) -> &mut Decider {
        &mut self.decider
    }

    pub fn set_rule_names(&mut self, names: Vec<String>) {
        self.rule_names = names;
    }

    fn kernel_decision(&self, a: &AccessInfo) -> Option<DecisionOut> {
        let enforced = match a.decision {
            Decision::None => return None,
            Decision::DeniedLsm => "lsm",
            Decision::Killed => "kill",
        };
        let rule = match a.rule {
            Some(u32::MAX) => Some("self-protection".to_owned()),
            Some(slot) => self.rule_names.get(slot as usize).cloned(),
            None => None,
        };
        Some(DecisionOut {
            action: "deny",
            enforced: Some(enforced),
            severity: Some("high".to_owned()),
            reason: Some(match enforced {
                "lsm" => "refused in the kernel (BPF-LSM) before it happened".to_owned(),
                _ => "actor killed at the syscall's entry (no BPF-LSM on this kernel)".to_owned(),
            }),
            rule,
            grant_id: None,
        })
    }

    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub fn enricher_mut(&mut self) -> &mut Enricher {
        &mut self.enricher
    }

    /// Records emitted so far.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Kind of the last record written (`""` before the first).
    pub fn last_kind(&self) -> &'static str {
        self.last_kind
    }

    #[expect(clippy::too_many_arguments, reason = "one record's parts, named")]
    fn write<D: Serialize>(
        &mut self,
        out: &mut Vec<u8>,
        ktime_ns: u64,
        kind: &'static str,
        actor: Option<&Actor>,
        target: Option<&Target>,
        detail: D,
        decision: Option<&DecisionOut>,
    ) -> Result<(), serde_json::Error> {
        let rec = Record {
            schema: SCHEMA,
            seq: self.seq + 1,
            time: self.clock.rfc3339(ktime_ns),
            monotonic_ns: ktime_ns,
            host: &self.host,
            kind,
            actor,
            target,
            detail,
            decision,
        };
        let start = out.len();
        crate::canonical_writer::to_writer(out, &rec)?;
        // The sealer hashes these bytes as they are: in debug builds (the
        // tests), check them against the reference encoder.
        #[cfg(debug_assertions)]
        {
            let v: serde_json::Value =
                serde_json::from_slice(&out[start..]).expect("invariant: a record is JSON");
            debug_assert_eq!(
                crate::canonical::to_vec(&v),
                &out[start..],
                "record builder output is not canonical"
            );
        }
        #[cfg(not(debug_assertions))]
        let _ = start;
        out.push(b'\n');
        self.seq += 1;
        self.last_kind = kind;
        Ok(())
    }

    /// Appends the `exec` record for `e` (already applied to `table`).
    pub fn exec(
        &mut self,
        out: &mut Vec<u8>,
        e: &ExecInfo,
        table: &ProcessTable,
    ) -> Result<(), serde_json::Error> {
        use agent_common::flags;

        let mut esc = Escapes(Vec::new());
        let actor = self.enricher.actor(&exec_facts(e), table, &mut esc);
        let mut incomplete = Vec::new();
        for (bit, what) in [
            (flags::ARGV_READ_FAILED, "argv"),
            (flags::FILENAME_READ_FAILED, "exe"),
            (flags::CREDS_READ_FAILED, "creds"),
            (flags::NO_AUDIT_IDS, "audit_ids"),
        ] {
            if e.flags & bit != 0 {
                incomplete.push(what);
            }
        }
        let debugger = self.decider.debugger_class(&actor.exe, &actor.comm);
        let decision = self.decider.decide(
            "exec",
            &actor,
            None,
            PolicyDetail {
                debugger: debugger.clone(),
                ..PolicyDetail::default()
            },
        );
        let detail = ExecDetail {
            argv_truncated: e.argv_truncated,
            argv_bytes: e.argv_total_len,
            escaped: esc.0,
            incomplete,
            debugger,
        };
        self.write(
            out,
            e.ktime_ns,
            "exec",
            Some(&actor),
            None,
            detail,
            decision.as_ref(),
        )
    }

    /// Appends the record of an access (ptrace, mem_access, perf_attach, bpf).
    /// Returns without writing when the target is the actor itself.
    pub fn access(
        &mut self,
        out: &mut Vec<u8>,
        a: &AccessInfo,
        table: &ProcessTable,
        window_s: Option<u64>,
    ) -> Result<(), serde_json::Error> {
        let mut esc = Escapes(Vec::new());
        let entry = table.get(a.tgid);
        let empty: Vec<Vec<u8>> = Vec::new();
        let facts = ActorFacts {
            pid: a.tgid,
            ppid: a.ppid,
            start_ns: a.start_ns,
            creds: a.creds,
            cgroup_id: a.cgroup_id,
            ns: a.ns,
            comm: &a.comm,
            exe: entry.map_or(&[][..], |e| &e.exe),
            argv: entry.map_or(&empty, |e| &e.argv),
            tty: entry.map_or(&[][..], |e| &e.tty),
            // The actor may have changed directory since its exec.
            cwd: None,
        };
        let host_pid = a
            .target_host_pid
            .or_else(|| self.enricher.resolve_target(a.ns, a.target_pid, table));
        let target = match (a.target_pid, host_pid) {
            (0, None) => None,
            (named, Some(h)) => Some(self.enricher.target(h, named, table, &mut esc)),
            (named, None) => Some(Target::unresolved(named)),
        };
        let actor = self.enricher.actor(&facts, table, &mut esc);
        let (kind, mut detail) = access_detail(a);
        if a.access == AccessKind::BpfProgLoad {
            detail.prog_name = Some(esc.text("prog_name", &a.name));
        }
        detail.window_s = window_s;
        detail.escaped = esc.0;
        let policy_detail = PolicyDetail {
            debugger: None,
            ptrace_request: detail.ptrace_request.as_ref().map(|c| c.to_string()),
            via: detail.via.map(str::to_owned),
            access: detail.access.map(str::to_owned),
            prog_type: detail.prog_type.as_ref().map(|c| c.to_string()),
        };
        // The kernel's own decision (a denial it made) comes first; else policy.
        let decision = self.kernel_decision(a).or_else(|| {
            self.decider
                .decide(kind, &actor, target.as_ref(), policy_detail)
        });
        if let Some(g) = decision.as_ref().and_then(|d| d.grant_id.clone()) {
            self.grant_uses.push(g);
        }
        self.write(
            out,
            a.ktime_ns,
            kind,
            Some(&actor),
            target.as_ref(),
            detail,
            decision.as_ref(),
        )
    }

    /// Appends a `lost` record.
    pub fn lost(
        &mut self,
        out: &mut Vec<u8>,
        now_ns: u64,
        counts: LostCounts,
        cumulative: LostCounts,
    ) -> Result<(), serde_json::Error> {
        let detail = LostDetail {
            total: counts.total(),
            counts,
            cumulative,
        };
        self.write(out, now_ns, "lost", None, None, detail, None)
    }

    /// Appends a `policy` record (loaded, rejected).
    pub fn policy<D: Serialize>(
        &mut self,
        out: &mut Vec<u8>,
        now_ns: u64,
        detail: D,
    ) -> Result<(), serde_json::Error> {
        self.write(out, now_ns, "policy", None, None, detail, None)
    }

    /// Appends a `grant` record (created, used, revoked, expired, refused).
    pub fn grant<D: Serialize>(
        &mut self,
        out: &mut Vec<u8>,
        now_ns: u64,
        detail: D,
    ) -> Result<(), serde_json::Error> {
        self.write(out, now_ns, "grant", None, None, detail, None)
    }

    /// Grant ids named by decisions since the last call.
    pub fn take_grant_uses(&mut self) -> Vec<String> {
        std::mem::take(&mut self.grant_uses)
    }

    /// Appends an `agent` record (start, stop) with a free-form detail.
    pub fn agent<D: Serialize>(
        &mut self,
        out: &mut Vec<u8>,
        now_ns: u64,
        detail: D,
    ) -> Result<(), serde_json::Error> {
        self.write(out, now_ns, "agent", None, None, detail, None)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use agent_common::{Creds, NsIds, flags};
    use serde_json::Value;

    use super::*;
    use crate::process::ProcessEntry;

    #[test]
    fn render_is_reversible_for_invalid_utf8() {
        assert_eq!(render(b"plain"), (Cow::Borrowed("plain"), false));
        let (s, esc) = render(b"a\xffb\\c");
        assert!(esc);
        assert_eq!(s, "a\\xffb\\\\c");
        // Valid UTF-8 with a backslash is left alone (nothing was escaped).
        assert_eq!(render(b"a\\x41").0, "a\\x41");
    }

    fn builder() -> RecordBuilder {
        RecordBuilder::new(
            Host {
                name: "h".into(),
                id: "m".into(),
                boot_id: "b".into(),
            },
            Clock::with_offset(0),
            Enricher::new(
                Path::new("/nonexistent-debugmon/etc"),
                Path::new("/nonexistent-debugmon/cgroup"),
                Path::new("/nonexistent-debugmon/proc"),
                8,
            ),
        )
    }

    fn exec(filename: &[u8], argv: Vec<Vec<u8>>, fl: u32) -> ExecInfo {
        ExecInfo {
            ktime_ns: 1,
            flags: fl,
            pid: 40,
            tgid: 40,
            start_ns: 1,
            ppid: 30,
            old_pid: 40,
            creds: Creds {
                uid: 1000,
                gid: 1000,
                euid: 0,
                egid: 0,
                auid: u32::MAX,
                sessionid: 3,
            },
            cgroup_id: 1,
            ns: NsIds::default(),
            comm: b"echo".to_vec(),
            tty: b"pts/1".to_vec(),
            filename: filename.to_vec(),
            argv,
            argv_truncated: fl & flags::ARGV_TRUNCATED != 0,
            argv_total_len: 10,
            cwd: None,
        }
    }

    fn table() -> ProcessTable {
        let mut t = ProcessTable::new(100, 1, 1);
        for (pid, ppid, comm) in [
            (1, 0, "init"),
            (20, 1, "sshd"),
            (30, 20, "bash"),
            (40, 30, "echo"),
        ] {
            let mut e = ProcessEntry::new(pid, 1, ppid);
            e.comm = comm.as_bytes().into();
            e.exe = format!("/usr/bin/{comm}").as_bytes().into();
            e.creds.uid = 70;
            t.insert(e);
        }
        t
    }

    /// serde writes a struct's fields in declaration order, and
    /// `split_members` takes only sorted keys: a struct that fails here
    /// still serializes correctly, but through the canonical writer's
    /// buffer instead of streaming.
    #[test]
    fn record_structs_declare_fields_in_key_order() {
        fn sorted<T: Serialize>(what: &str, v: &T) {
            let raw = serde_json::to_vec(v).unwrap();
            assert!(
                crate::canonical::split_members(&raw).is_some(),
                "{what}: fields not in key order: {}",
                String::from_utf8_lossy(&raw)
            );
        }
        let mut b = builder();
        let e = exec(b"/bin/echo", vec![b"/bin/echo".to_vec()], 0);
        let actor = b
            .enricher
            .actor(&exec_facts(&e), &table(), &mut Escapes(Vec::new()));
        sorted("Actor", &actor);
        sorted("AncestorOut", &actor.ancestry[0]);
        sorted("Namespaces", &actor.namespaces);
        sorted("Host", &b.host);
        sorted(
            "Ssh",
            &crate::enrich::Ssh {
                src_ip: "192.0.2.1".into(),
                src_port: 22,
            },
        );
        let detail = ExecDetail {
            argv_truncated: false,
            argv_bytes: 1,
            escaped: vec!["argv"],
            incomplete: vec!["exe"],
            debugger: Some("gdb".into()),
        };
        sorted("ExecDetail", &detail);
        let decision = DecisionOut {
            action: "deny",
            enforced: Some("lsm"),
            rule: Some("r".into()),
            severity: Some("high".into()),
            reason: Some("why".into()),
            grant_id: Some("g".into()),
        };
        sorted("DecisionOut", &decision);
        let record = Record {
            schema: 1,
            seq: 1,
            time: "t".into(),
            monotonic_ns: 1,
            host: &b.host,
            kind: "exec",
            actor: Some(&actor),
            target: None,
            detail,
            decision: Some(&decision),
        };
        sorted("Record", &record);
    }

    #[test]
    fn exec_record_has_the_design_fields() {
        let mut b = builder();
        let mut out = Vec::new();
        let e = exec(b"/bin/echo", vec![b"/bin/echo".to_vec(), b"hi".to_vec()], 0);
        b.exec(&mut out, &e, &table()).unwrap();
        assert_eq!(out.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["seq"], 1);
        assert_eq!(v["kind"], "exec");
        assert_eq!(v["host"]["boot_id"], "b");
        assert_eq!(v["actor"]["argv"][1], "hi");
        assert_eq!(v["actor"]["auid"], Value::Null, "unset auid is null");
        assert_eq!(v["actor"]["session_id"], 3);
        let anc: Vec<u64> = v["actor"]["ancestry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["pid"].as_u64().unwrap())
            .collect();
        assert_eq!(anc, vec![30, 20, 1]);
        assert!(v["detail"].get("escaped").is_none());
    }

    #[test]
    fn non_utf8_fields_are_escaped_and_listed() {
        let mut b = builder();
        let mut out = Vec::new();
        let e = exec(b"/tmp/\xff", vec![b"x\xfe".to_vec()], flags::ARGV_TRUNCATED);
        b.exec(&mut out, &e, &table()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["actor"]["exe"], "/tmp/\\xff");
        assert_eq!(v["actor"]["argv"][0], "x\\xfe");
        assert_eq!(v["detail"]["escaped"], serde_json::json!(["exe", "argv"]));
        assert_eq!(v["detail"]["argv_truncated"], true);
    }

    fn access(kind: AccessKind, target: u32, request: u64) -> AccessInfo {
        AccessInfo {
            ktime_ns: 5,
            flags: 0,
            pid: 30,
            tgid: 30,
            start_ns: 1,
            access: kind,
            target_pid: target,
            request,
            arg: 0,
            ret: Some(-1),
            count: 1,
            aggregate: false,
            io_uring: false,
            target_host_pid: None,
            ppid: 20,
            creds: Creds::default(),
            ns: NsIds::default(),
            cgroup_id: 0,
            comm: b"bash".to_vec(),
            name: b"myprog".to_vec(),
            decision: Decision::None,
            rule: None,
        }
    }

    fn one(out: &[u8]) -> Value {
        serde_json::from_slice(out).unwrap()
    }

    #[test]
    fn ptrace_record_names_the_request_target_and_result() {
        let mut b = builder();
        let mut out = Vec::new();
        b.access(
            &mut out,
            &access(AccessKind::Ptrace, 40, 16),
            &table(),
            None,
        )
        .unwrap();
        let v = one(&out);
        assert_eq!(v["kind"], "ptrace");
        assert_eq!(v["detail"]["ptrace_request"], "PTRACE_ATTACH");
        assert_eq!(v["detail"]["result"], "EPERM");
        assert_eq!(v["actor"]["pid"], 30);
        assert_eq!(
            v["actor"]["exe"], "/usr/bin/bash",
            "actor exe from the table"
        );
        assert_eq!(v["target"]["pid"], 40);
        assert_eq!(v["target"]["comm"], "echo");
        assert_eq!(v["target"]["uid"], 70);
        assert_eq!(v["target"]["known"], true);
    }

    #[test]
    fn mem_access_kinds_tell_read_from_write() {
        let mut b = builder();
        let cases = [
            (AccessKind::VmReadv, 0, "process_vm_readv", "read"),
            (AccessKind::VmWritev, 0, "process_vm_writev", "write"),
            (AccessKind::ProcMem, 0, "proc_mem", "read"),
            (AccessKind::ProcMem, 2, "proc_mem", "write"),
            (AccessKind::ProcEnviron, 0, "proc_environ", "read"),
            (AccessKind::PidfdGetfd, 0, "pidfd_getfd", "fd"),
        ];
        for (kind, req, via, rw) in cases {
            let mut out = Vec::new();
            b.access(&mut out, &access(kind, 40, req), &table(), None)
                .unwrap();
            let v = one(&out);
            assert_eq!(v["kind"], "mem_access");
            assert_eq!(v["detail"]["via"], via);
            assert_eq!(v["detail"]["access"], rw, "{kind:?} {req}");
            assert!(v["detail"].get("io_uring").is_none(), "{v}");
        }
        // An open through io_uring says so.
        let mut out = Vec::new();
        let a = AccessInfo {
            io_uring: true,
            ..access(AccessKind::ProcMem, 40, 0)
        };
        b.access(&mut out, &a, &table(), None).unwrap();
        let v = one(&out);
        assert_eq!(v["detail"]["via"], "proc_mem");
        assert_eq!(v["detail"]["io_uring"], true);
    }

    #[test]
    fn perf_and_bpf_records() {
        let mut b = builder();
        let mut out = Vec::new();
        b.access(
            &mut out,
            &access(AccessKind::PerfOpen, 0, 0),
            &table(),
            None,
        )
        .unwrap();
        let v = one(&out);
        assert_eq!(v["kind"], "perf_attach");
        assert_eq!(v["detail"]["system_wide"], true);
        assert!(v.get("target").is_none());
        let mut out = Vec::new();
        b.access(
            &mut out,
            &access(AccessKind::BpfProgLoad, 0, 29),
            &table(),
            None,
        )
        .unwrap();
        let v = one(&out);
        assert_eq!(v["kind"], "bpf");
        assert_eq!(v["detail"]["prog_type"], "lsm");
        assert_eq!(v["detail"]["prog_name"], "myprog");
    }

    #[test]
    fn kernel_denials_carry_the_rule_and_the_mechanism() {
        let mut b = builder();
        b.set_rule_names(vec!["attach-to-database".into()]);
        let mut out = Vec::new();
        let mut a = access(AccessKind::LsmAccess, 40, 2);
        a.decision = Decision::DeniedLsm;
        a.rule = Some(0);
        b.access(&mut out, &a, &table(), None).unwrap();
        let v = one(&out);
        assert_eq!(v["decision"]["action"], "deny");
        assert_eq!(v["decision"]["enforced"], "lsm");
        assert_eq!(v["decision"]["rule"], "attach-to-database");
        assert_eq!(v["detail"]["lsm_hook"], "ptrace_access_check");
        let mut out = Vec::new();
        let mut k = access(AccessKind::Ptrace, 40, 16);
        k.decision = Decision::Killed;
        k.rule = Some(u32::MAX);
        b.access(&mut out, &k, &table(), None).unwrap();
        let v = one(&out);
        assert_eq!(v["decision"]["enforced"], "kill");
        assert_eq!(v["decision"]["rule"], "self-protection");
        let mut out = Vec::new();
        b.access(
            &mut out,
            &access(AccessKind::Ptrace, 40, 16),
            &table(),
            None,
        )
        .unwrap();
        assert!(
            one(&out).get("decision").is_none(),
            "observed only: no decision"
        );
    }

    #[test]
    fn a_deny_is_recorded_as_enforced_only_where_the_kernel_acted() {
        use crate::{decide::Decider, enforce::Mechanism, policy::PolicySet};
        let set = PolicySet::from_texts(&[(
            "t.yaml",
            "rules:\n  - name: no-echo\n    title: reading echo\n    description: d\n    on: [mem_read]\n    target: { comm: [echo] }\n    action: deny\n    severity: high\n",
        )])
        .unwrap();
        let set = std::sync::Arc::new(set);
        let record = |kind: AccessKind, mechanism: Mechanism| {
            let mut b = builder();
            *b.decider_mut() = Decider::new(std::sync::Arc::clone(&set), None);
            b.decider_mut()
                .set_kernel(["no-echo".to_owned()].into(), mechanism);
            let mut out = Vec::new();
            b.access(&mut out, &access(kind, 40, 0), &table(), None)
                .unwrap();
            one(&out)
        };
        // BPF-LSM refused the mem open in the kernel.
        let v = record(AccessKind::ProcMem, Mechanism::Lsm);
        assert_eq!(v["decision"]["action"], "deny", "{v}");
        assert_eq!(v["decision"]["enforced"], "lsm", "{v}");
        // Neither mechanism acts on an environ read (the LSM refuses only
        // PTRACE_MODE_ATTACH accesses); and a kill by the fallback comes
        // with the kernel's own decision, so an event without one was not
        // acted on.
        for (kind, mechanism) in [
            (AccessKind::ProcEnviron, Mechanism::Lsm),
            (AccessKind::ProcEnviron, Mechanism::Kill),
            (AccessKind::ProcMem, Mechanism::Kill),
        ] {
            let v = record(kind, mechanism);
            assert_eq!(v["decision"]["action"], "deny", "{v}");
            assert!(v["decision"]["enforced"].is_null(), "{v}");
            let reason = v["decision"]["reason"].as_str().unwrap();
            assert!(reason.contains("not enforced"), "{reason}");
        }
    }

    #[test]
    fn unknown_target_is_marked_not_invented() {
        let mut b = builder();
        let mut out = Vec::new();
        b.access(
            &mut out,
            &access(AccessKind::Ptrace, 999, 16),
            &table(),
            None,
        )
        .unwrap();
        let v = one(&out);
        assert_eq!(v["target"]["pid"], 999);
        assert_eq!(v["target"]["known"], false);
        assert_eq!(v["target"]["comm"], Value::Null);
    }

    #[test]
    fn seq_increments_across_kinds() {
        let mut b = builder();
        let mut out = Vec::new();
        b.agent(&mut out, 1, serde_json::json!({"event": "started"}))
            .unwrap();
        b.lost(
            &mut out,
            2,
            LostCounts {
                exec: 3,
                ..Default::default()
            },
            LostCounts::default(),
        )
        .unwrap();
        let lines: Vec<Value> = out
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines[0]["seq"], 1);
        assert_eq!(lines[1]["seq"], 2);
        assert_eq!(lines[1]["kind"], "lost");
        assert_eq!(lines[1]["detail"]["counts"]["exec"], 3);
        assert_eq!(lines[1]["detail"]["total"], 3);
        assert!(lines[1].get("actor").is_none());
    }
}
