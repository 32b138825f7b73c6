//! Builds the JSON records of DESIGN.md from enriched events: one object
//! per line, `schema` versioned. Byte strings that are not UTF-8 are
//! rendered reversibly (`\xNN` for each invalid byte, `\\` for a backslash)
//! and the record lists those fields in `detail.escaped`, so nothing is
//! silently replaced.

use std::borrow::Cow;

use serde::Serialize;

use crate::{
    event::ExecInfo,
    host::{Clock, Host},
    process::{Ancestor, ProcessTable},
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

/// Audit ids are `-1` (u32::MAX) when unset; records say `null` instead.
fn audit_id(v: u32) -> Option<u32> {
    (v != u32::MAX).then_some(v)
}

#[derive(Serialize)]
struct Record<'a, A: Serialize, D: Serialize> {
    schema: u32,
    seq: u64,
    time: String,
    monotonic_ns: u64,
    host: &'a Host,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<A>,
    detail: D,
}

#[derive(Serialize)]
struct AncestorOut<'a> {
    pid: u32,
    comm: Cow<'a, str>,
    exe: Cow<'a, str>,
}

#[derive(Serialize)]
struct ExecActor<'a> {
    pid: u32,
    tgid: u32,
    ppid: u32,
    uid: u32,
    gid: u32,
    euid: u32,
    egid: u32,
    auid: Option<u32>,
    session_id: Option<u32>,
    comm: Cow<'a, str>,
    exe: Cow<'a, str>,
    argv: Vec<Cow<'a, str>>,
    cgroup_id: u64,
    start_ns: u64,
    ancestry: Vec<AncestorOut<'a>>,
}

#[derive(Serialize)]
struct ExecDetail {
    argv_truncated: bool,
    /// Size of the whole argv in the process, copied or not.
    argv_bytes: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    escaped: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    incomplete: Vec<&'static str>,
}

/// Events dropped before they became records, since the previous `lost` record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LostCounts {
    pub exec: u64,
    pub fork: u64,
    pub exit: u64,
    /// Ring buffer items that could not be decoded.
    pub undecodable: u64,
}

impl LostCounts {
    pub fn total(&self) -> u64 {
        self.exec + self.fork + self.exit + self.undecodable
    }
}

#[derive(Serialize)]
struct LostDetail {
    counts: LostCounts,
    total: u64,
    /// Totals since the agent started.
    cumulative: LostCounts,
}

/// Numbers records and renders them.
pub struct RecordBuilder {
    host: Host,
    clock: Clock,
    seq: u64,
    ancestry_depth: usize,
}

impl RecordBuilder {
    pub fn new(host: Host, clock: Clock, ancestry_depth: usize) -> Self {
        Self {
            host,
            clock,
            seq: 0,
            ancestry_depth,
        }
    }

    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// Records emitted so far.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn write<A: Serialize, D: Serialize>(
        &mut self,
        out: &mut Vec<u8>,
        ktime_ns: u64,
        kind: &'static str,
        actor: Option<A>,
        detail: D,
    ) -> Result<(), serde_json::Error> {
        let rec = Record {
            schema: SCHEMA,
            seq: self.seq + 1,
            time: self.clock.rfc3339(ktime_ns),
            monotonic_ns: ktime_ns,
            host: &self.host,
            kind,
            actor,
            detail,
        };
        serde_json::to_writer(&mut *out, &rec)?;
        out.push(b'\n');
        self.seq += 1;
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

        let mut escaped = Vec::new();
        let mut note = |field: &'static str, (s, esc): (Cow<'_, str>, bool)| {
            if esc && !escaped.contains(&field) {
                escaped.push(field);
            }
            s.into_owned()
        };
        let exe = note("exe", render(&e.filename));
        let comm = note("comm", render(&e.comm));
        let argv: Vec<Cow<'_, str>> = e
            .argv
            .iter()
            .map(|a| Cow::Owned(note("argv", render(a))))
            .collect();
        let ancestors: Vec<Ancestor> = table.ancestry(e.tgid, self.ancestry_depth);
        let ancestry = ancestors
            .iter()
            .map(|a| AncestorOut {
                pid: a.pid,
                comm: Cow::Owned(note("ancestry", render(&a.comm))),
                exe: Cow::Owned(note("ancestry", render(&a.exe))),
            })
            .collect();

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

        let actor = ExecActor {
            pid: e.tgid,
            tgid: e.tgid,
            ppid: e.ppid,
            uid: e.creds.uid,
            gid: e.creds.gid,
            euid: e.creds.euid,
            egid: e.creds.egid,
            auid: audit_id(e.creds.auid),
            session_id: audit_id(e.creds.sessionid),
            comm: Cow::Owned(comm),
            exe: Cow::Owned(exe),
            argv,
            cgroup_id: e.cgroup_id,
            start_ns: e.start_ns,
            ancestry,
        };
        let detail = ExecDetail {
            argv_truncated: e.argv_truncated,
            argv_bytes: e.argv_total_len,
            escaped,
            incomplete,
        };
        self.write(out, e.ktime_ns, "exec", Some(actor), detail)
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
        self.write::<(), _>(out, now_ns, "lost", None, detail)
    }

    /// Appends an `agent` record (start, stop) with a free-form detail.
    pub fn agent<D: Serialize>(
        &mut self,
        out: &mut Vec<u8>,
        now_ns: u64,
        detail: D,
    ) -> Result<(), serde_json::Error> {
        self.write::<(), _>(out, now_ns, "agent", None, detail)
    }
}

#[cfg(test)]
mod tests {
    use agent_common::{Creds, flags};
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
            8,
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
            comm: b"echo".to_vec(),
            filename: filename.to_vec(),
            argv,
            argv_truncated: fl & flags::ARGV_TRUNCATED != 0,
            argv_total_len: 10,
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
            t.insert(ProcessEntry {
                pid,
                start_ns: 1,
                ppid,
                comm: comm.as_bytes().to_vec(),
                exe: format!("/usr/bin/{comm}").into_bytes(),
                uid: 0,
                exited_ns: None,
            });
        }
        t
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
