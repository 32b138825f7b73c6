//! Process table keyed by tgid, with each entry's start time so a reused pid
//! is never mistaken for its predecessor. Exited processes stay for a grace
//! period: a child's exec is often processed after its parent has exited,
//! and its ancestry must still name that parent. A process that leaves no
//! child behind in the table and was never the actor of an access record
//! stays only [`SHORT_GRACE_NS`]: nothing will ask about it, and under fork
//! or exec storms those were nearly all of the agent's memory. Bounded:
//! past `max_entries` the oldest exited entries go first, and every
//! eviction is counted.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use agent_common::{Creds, NsIds};

use crate::event::{ExeFile, ExecInfo, ExitInfo, ForkInfo};

/// One process as the table knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEntry {
    pub pid: u32,
    pub start_ns: u64,
    pub ppid: u32,
    // Shared: a forked child runs its parent's image until it execs, and
    // copying it per fork was most of the table's memory in fork storms.
    pub comm: Arc<[u8]>,
    pub exe: Arc<[u8]>,
    pub argv: Arc<[Vec<u8>]>,
    pub creds: Creds,
    pub cgroup_id: u64,
    pub ns: NsIds,
    pub tty: Arc<[u8]>,
    /// The file the process runs, as the kernel knows it.
    pub exe_file: ExeFile,
    /// `CLOCK_BOOTTIME` ns of the exit, once it happened.
    pub exited_ns: Option<u64>,
    /// Seen in /proc at start, or the actor of an access record: kept the
    /// full grace period after its exit.
    pub notable: bool,
    /// Children of this process in the table (kept the full grace period
    /// after its exit while any is there).
    pub children: u32,
}

/// How long a process nothing refers to stays after its exit (see the
/// module doc).
pub const SHORT_GRACE_NS: u64 = 1_000_000_000;

impl ProcessEntry {
    /// An entry with only identity and lineage known.
    pub fn new(pid: u32, start_ns: u64, ppid: u32) -> Self {
        Self {
            pid,
            start_ns,
            ppid,
            comm: Arc::default(),
            exe: Arc::default(),
            argv: Arc::default(),
            creds: Creds::default(),
            cgroup_id: 0,
            ns: NsIds::default(),
            tty: Arc::default(),
            exe_file: ExeFile::default(),
            exited_ns: None,
            notable: false,
            children: 0,
        }
    }
}

/// One level of an actor's ancestry, nearest parent first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ancestor {
    pub pid: u32,
    /// Start time (boot ns): with the pid, names the process across pid reuse.
    pub start_ns: u64,
    pub comm: Arc<[u8]>,
    pub exe: Arc<[u8]>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub live: usize,
    pub exited_pending: usize,
    /// Entries dropped because the table hit its bound.
    pub evicted: u64,
}

pub struct ProcessTable {
    procs: HashMap<u32, ProcessEntry>,
    /// (pid namespace, pid inside it) -> host pid, for processes outside the
    /// host's pid namespace: resolves the pid a containerized tracer names.
    by_ns_pid: HashMap<(u32, u32), u32>,
    exited: VecDeque<(u32, u64, u64)>,
    /// Exited fork-only children, reaped after [`SHORT_GRACE_NS`].
    exited_short: VecDeque<(u32, u64, u64)>,
    max_entries: usize,
    grace_ns: u64,
    /// Start times seeded from /proc are in clock ticks; two start times
    /// within one tick name the same process.
    tick_ns: u64,
    evicted: u64,
}

impl ProcessTable {
    pub fn new(max_entries: usize, grace_ns: u64, tick_ns: u64) -> Self {
        Self {
            procs: HashMap::new(),
            by_ns_pid: HashMap::new(),
            exited: VecDeque::new(),
            exited_short: VecDeque::new(),
            max_entries: max_entries.max(1),
            grace_ns,
            tick_ns: tick_ns.max(1),
            evicted: 0,
        }
    }

    fn exited_len(&self) -> usize {
        self.exited.len() + self.exited_short.len()
    }

    /// Keeps `pid` the full grace period after its exit (it was an actor).
    pub fn mark_notable(&mut self, pid: u32) {
        if let Some(p) = self.procs.get_mut(&pid) {
            p.notable = true;
        }
    }

    fn same_start(&self, a: u64, b: u64) -> bool {
        a.abs_diff(b) < self.tick_ns
    }

    /// Pids of every known process.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.procs.keys().copied()
    }

    pub fn get(&self, pid: u32) -> Option<&ProcessEntry> {
        self.procs.get(&pid)
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn stats(&self) -> TableStats {
        TableStats {
            live: self.procs.len() - self.exited_len().min(self.procs.len()),
            exited_pending: self.exited_len(),
            evicted: self.evicted,
        }
    }

    /// Inserts or replaces an entry (seeding from /proc, or a new process).
    pub fn insert(&mut self, mut entry: ProcessEntry) {
        if entry.ns.pid_ns != 0 && entry.ns.ns_pid != 0 && entry.ns.ns_pid != entry.pid {
            self.by_ns_pid
                .insert((entry.ns.pid_ns, entry.ns.ns_pid), entry.pid);
        }
        // An exec replaces the entry of the same process: what is known
        // about its children and records stays.
        let same = match self.procs.get(&entry.pid) {
            Some(old) if self.same_start(old.start_ns, entry.start_ns) => {
                entry.children = old.children;
                entry.notable |= old.notable;
                true
            }
            _ => false,
        };
        if !same && let Some(p) = self.procs.get_mut(&entry.ppid) {
            p.children = p.children.saturating_add(1);
        }
        if let Some(old) = self.procs.insert(entry.pid, entry) {
            self.unindex(&old);
            if !same {
                self.release(old.ppid);
            }
        }
        self.enforce_bound();
    }

    /// One child of `ppid` left the table.
    fn release(&mut self, ppid: u32) {
        if let Some(p) = self.procs.get_mut(&ppid) {
            p.children = p.children.saturating_sub(1);
        }
    }

    fn unindex(&mut self, old: &ProcessEntry) {
        let key = (old.ns.pid_ns, old.ns.ns_pid);
        if self.by_ns_pid.get(&key) == Some(&old.pid)
            && self
                .procs
                .get(&old.pid)
                .is_none_or(|cur| (cur.ns.pid_ns, cur.ns.ns_pid) != key)
        {
            self.by_ns_pid.remove(&key);
        }
    }

    fn remove(&mut self, pid: u32) {
        if let Some(old) = self.procs.remove(&pid) {
            self.unindex(&old);
            self.release(old.ppid);
        }
    }

    /// Host pid of the process that is `ns_pid` inside pid namespace `pid_ns`.
    pub fn host_pid(&self, pid_ns: u32, ns_pid: u32) -> Option<u32> {
        self.by_ns_pid.get(&(pid_ns, ns_pid)).copied()
    }

    pub fn on_fork(&mut self, f: &ForkInfo) {
        // Until it execs, the child runs its parent's image.
        let mut e = ProcessEntry::new(f.pid, f.start_ns, f.parent_tgid);
        if let Some(p) = self.procs.get(&f.parent_tgid) {
            e.exe = p.exe.clone();
            e.argv = p.argv.clone();
            e.tty = p.tty.clone();
            e.comm = p.comm.clone();
            e.exe_file = p.exe_file;
        } else {
            e.comm = f.comm.as_slice().into();
        }
        e.creds = f.creds;
        e.cgroup_id = f.cgroup_id;
        e.ns = f.ns;
        self.insert(e);
    }

    pub fn on_exec(&mut self, e: &ExecInfo) {
        self.insert(ProcessEntry {
            pid: e.tgid,
            start_ns: e.start_ns,
            ppid: e.ppid,
            comm: e.comm.as_slice().into(),
            exe: e.filename.as_slice().into(),
            argv: e.argv.as_slice().into(),
            creds: e.creds,
            cgroup_id: e.cgroup_id,
            ns: e.ns,
            tty: e.tty.as_slice().into(),
            exe_file: e.exe_file,
            exited_ns: None,
            notable: false,
            children: 0,
        });
    }

    pub fn on_exit(&mut self, x: &ExitInfo) {
        let tick = self.tick_ns;
        if let Some(p) = self.procs.get_mut(&x.pid)
            && p.start_ns.abs_diff(x.start_ns) < tick
            && p.exited_ns.is_none()
        {
            p.exited_ns = Some(x.ktime_ns);
            let queue = if p.notable || p.children > 0 {
                &mut self.exited
            } else {
                &mut self.exited_short
            };
            queue.push_back((x.pid, x.start_ns, x.ktime_ns));
        }
        // Fork-only children go by kernel time, as exits come in: waiting
        // for the periodic reap let a fork storm fill the table.
        self.reap_queue(true, x.ktime_ns, SHORT_GRACE_NS.min(self.grace_ns));
    }

    /// Forgets processes that exited more than their grace period before `now_ns`.
    pub fn reap(&mut self, now_ns: u64) {
        self.reap_queue(false, now_ns, self.grace_ns);
        self.reap_queue(true, now_ns, SHORT_GRACE_NS.min(self.grace_ns));
    }

    fn reap_queue(&mut self, short: bool, now_ns: u64, grace: u64) {
        loop {
            let q = if short {
                &mut self.exited_short
            } else {
                &mut self.exited
            };
            match q.front() {
                Some(&(pid, start, at)) if now_ns.saturating_sub(at) >= grace => {
                    q.pop_front();
                    self.remove_if_exited(pid, start);
                }
                _ => break,
            }
        }
    }

    fn remove_if_exited(&mut self, pid: u32, start: u64) {
        let matches = self
            .procs
            .get(&pid)
            .is_some_and(|p| p.exited_ns.is_some() && self.same_start(p.start_ns, start));
        if matches {
            self.remove(pid);
        }
    }

    fn enforce_bound(&mut self) {
        while self.procs.len() > self.max_entries {
            // Fork-only children go first: nothing will ask about them.
            let oldest = self
                .exited_short
                .pop_front()
                .or_else(|| self.exited.pop_front());
            if let Some((pid, start, _)) = oldest {
                let before = self.procs.len();
                self.remove_if_exited(pid, start);
                if self.procs.len() < before {
                    self.evicted += 1;
                }
            } else {
                // Only live entries are left: drop an arbitrary one rather
                // than grow without bound; its children lose that ancestor.
                let Some(&pid) = self.procs.keys().next() else {
                    break;
                };
                self.remove(pid);
                self.evicted += 1;
            }
        }
    }

    /// Parents of `pid`, nearest first, up to `max_depth` levels. Stops at
    /// pid 0, an unknown pid, or a loop.
    pub fn ancestry(&self, pid: u32, max_depth: usize) -> Vec<Ancestor> {
        let mut out = Vec::new();
        let mut cur = match self.procs.get(&pid) {
            Some(p) => p.ppid,
            None => return out,
        };
        while cur != 0 && out.len() < max_depth {
            let Some(p) = self.procs.get(&cur) else { break };
            if out.iter().any(|a: &Ancestor| a.pid == p.pid) || p.pid == pid {
                break;
            }
            out.push(Ancestor {
                pid: p.pid,
                start_ns: p.start_ns,
                comm: Arc::clone(&p.comm),
                exe: Arc::clone(&p.exe),
            });
            cur = p.ppid;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 10_000_000;

    fn entry(pid: u32, ppid: u32, comm: &str) -> ProcessEntry {
        let mut e = ProcessEntry::new(pid, u64::from(pid) * 1_000_000_000, ppid);
        e.comm = comm.as_bytes().into();
        e.exe = format!("/bin/{comm}").as_bytes().into();
        e.notable = true;
        e
    }

    fn fork(pid: u32, parent: u32, start: u64) -> ForkInfo {
        ForkInfo {
            ktime_ns: start,
            flags: 0,
            pid,
            start_ns: start,
            parent_tgid: parent,
            parent_start_ns: 0,
            creds: Creds::default(),
            cgroup_id: 0,
            ns: NsIds::default(),
            comm: b"x".to_vec(),
        }
    }

    fn exec(pid: u32, ppid: u32, start: u64, comm: &str) -> ExecInfo {
        ExecInfo {
            ktime_ns: start + 1,
            flags: 0,
            pid,
            tgid: pid,
            start_ns: start,
            ppid,
            old_pid: pid,
            creds: Creds::default(),
            cgroup_id: 0,
            ns: NsIds::default(),
            comm: comm.as_bytes().to_vec(),
            tty: Vec::new(),
            filename: format!("/bin/{comm}").into_bytes(),
            argv: vec![comm.as_bytes().to_vec()],
            argv_truncated: false,
            argv_total_len: 0,
            exe_file: Default::default(),
            cwd: None,
        }
    }

    fn exit(pid: u32, start: u64, at: u64) -> ExitInfo {
        ExitInfo {
            ktime_ns: at,
            pid,
            start_ns: start,
            exit_code: 0,
        }
    }

    fn chain() -> ProcessTable {
        let mut t = ProcessTable::new(1000, 5_000_000_000, TICK);
        t.insert(entry(1, 0, "systemd"));
        t.insert(entry(10, 1, "sshd"));
        t.insert(entry(20, 10, "bash"));
        t.insert(entry(30, 20, "make"));
        t.insert(entry(40, 30, "cc"));
        t
    }

    #[test]
    fn ancestry_walks_to_init_nearest_first() {
        let t = chain();
        let pids: Vec<u32> = t.ancestry(40, 16).iter().map(|a| a.pid).collect();
        assert_eq!(pids, vec![30, 20, 10, 1]);
        assert_eq!(t.ancestry(40, 2).len(), 2);
        assert!(t.ancestry(999, 16).is_empty());
    }

    #[test]
    fn ancestry_stops_on_a_loop() {
        let mut t = chain();
        t.insert(entry(20, 40, "bash")); // 40 -> 30 -> 20 -> 40
        let pids: Vec<u32> = t.ancestry(40, 16).iter().map(|a| a.pid).collect();
        assert_eq!(pids, vec![30, 20]);
    }

    #[test]
    fn fork_inherits_parent_image_until_exec() {
        let mut t = chain();
        t.on_fork(&fork(50, 20, 77));
        let e = t.get(50).unwrap();
        assert_eq!(&*e.exe, b"/bin/bash");
        assert_eq!(e.ppid, 20);
    }

    #[test]
    fn exited_parent_stays_for_grace_then_goes() {
        let mut t = chain();
        let start = t.get(30).unwrap().start_ns;
        t.on_exit(&exit(30, start, 100));
        t.reap(100 + 1_000);
        assert_eq!(t.ancestry(40, 16)[0].pid, 30, "still there within grace");
        t.reap(100 + 5_000_000_000);
        assert!(t.get(30).is_none());
        assert_eq!(t.stats().exited_pending, 0);
    }

    #[test]
    fn a_fork_that_exited_without_exec_goes_after_the_short_grace() {
        let mut t = chain(); // grace 5 s
        t.on_fork(&fork(50, 20, 77));
        t.on_fork(&fork(51, 20, 78));
        t.on_fork(&fork(52, 20, 79));
        t.mark_notable(51); // an actor of a record
        for pid in [50, 51, 52] {
            t.on_exit(&exit(pid, 77 + u64::from(pid - 50), 100));
        }
        let stats = t.stats();
        assert_eq!(stats.exited_pending, 3);
        t.reap(100 + SHORT_GRACE_NS - 1);
        assert!(t.get(50).is_some(), "kept within the short grace");
        t.reap(100 + SHORT_GRACE_NS);
        assert!(
            t.get(50).is_none() && t.get(52).is_none(),
            "fork-only: gone"
        );
        assert!(t.get(51).is_some(), "an actor stays the full grace");
        t.reap(100 + 5_000_000_000);
        assert!(t.get(51).is_none());
        assert_eq!(t.stats().exited_pending, 0);
    }

    #[test]
    fn an_exited_parent_stays_while_a_child_is_in_the_table() {
        let mut t = ProcessTable::new(1000, 5_000_000_000, TICK);
        t.insert(entry(20, 1, "bash"));
        t.on_fork(&fork(50, 20, 77));
        t.on_exec(&exec(50, 20, 77, "make"));
        t.on_fork(&fork(60, 50, 88)); // make's child
        t.on_fork(&fork(61, 50, 89));
        assert_eq!(t.get(50).unwrap().children, 2, "the exec kept the count");
        t.on_exit(&exit(61, 89, 100));
        t.on_exit(&exit(50, 77, 100));
        t.reap(100 + SHORT_GRACE_NS);
        assert!(t.get(61).is_none(), "an exited leaf goes early");
        assert_eq!(
            t.ancestry(60, 16)[0].pid,
            50,
            "the parent of a live child stays"
        );
        // A leaf that exec'd and exited goes early too.
        t.on_fork(&fork(70, 20, 90));
        t.on_exec(&exec(70, 20, 90, "true"));
        t.on_exit(&exit(70, 90, 200));
        t.reap(200 + SHORT_GRACE_NS);
        assert!(t.get(70).is_none());
        t.reap(100 + 5_000_000_000);
        assert!(t.get(50).is_none(), "and goes after the full grace");
    }

    #[test]
    fn exit_of_a_previous_process_with_the_same_pid_is_ignored() {
        let mut t = chain();
        t.on_exit(&exit(30, 1, 100)); // wrong start time: an older process
        t.reap(u64::MAX);
        assert!(t.get(30).is_some());
    }

    #[test]
    fn reused_pid_survives_reaping_of_its_predecessor() {
        let mut t = chain();
        let start = t.get(30).unwrap().start_ns;
        t.on_exit(&exit(30, start, 100));
        t.on_fork(&fork(30, 20, start + 10 * TICK)); // pid reused
        t.reap(u64::MAX);
        let e = t.get(30).expect("new process kept");
        assert_eq!(e.start_ns, start + 10 * TICK);
    }

    #[test]
    fn namespaced_pids_resolve_to_host_pids_until_the_process_goes() {
        let mut t = chain();
        let mut e = entry(500, 20, "sleep");
        e.ns = NsIds {
            pid_ns: 77,
            user_ns: 1,
            mnt_ns: 1,
            ns_pid: 2,
        };
        t.insert(e);
        assert_eq!(t.host_pid(77, 2), Some(500));
        assert_eq!(t.host_pid(77, 3), None);
        let start = t.get(500).unwrap().start_ns;
        t.on_exit(&exit(500, start, 1));
        t.reap(u64::MAX);
        assert_eq!(t.host_pid(77, 2), None);
    }

    #[test]
    fn bound_evicts_exited_first_and_counts() {
        let mut t = ProcessTable::new(3, u64::MAX, TICK);
        t.insert(entry(1, 0, "a"));
        t.insert(entry(2, 1, "b"));
        t.insert(entry(3, 1, "c"));
        let s2 = t.get(2).unwrap().start_ns;
        t.on_exit(&exit(2, s2, 5));
        t.insert(entry(4, 1, "d"));
        assert_eq!(t.len(), 3);
        assert!(t.get(2).is_none(), "the exited entry went first");
        assert!(t.get(1).is_some() && t.get(3).is_some() && t.get(4).is_some());
        assert_eq!(t.stats().evicted, 1);
        t.insert(entry(5, 1, "e"));
        assert_eq!(t.len(), 3);
        assert_eq!(t.stats().evicted, 2);
    }
}
