//! Process table keyed by tgid, with each entry's start time so a reused pid
//! is never mistaken for its predecessor. Exited processes stay for a grace
//! period: a child's exec is often processed after its parent has exited,
//! and its ancestry must still name that parent. Bounded: past `max_entries`
//! the oldest exited entries go first, and every eviction is counted.

use std::collections::{HashMap, VecDeque};

use crate::event::{ExecInfo, ExitInfo, ForkInfo};

/// One process as the table knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEntry {
    pub pid: u32,
    pub start_ns: u64,
    pub ppid: u32,
    pub comm: Vec<u8>,
    pub exe: Vec<u8>,
    pub uid: u32,
    /// `CLOCK_BOOTTIME` ns of the exit, once it happened.
    pub exited_ns: Option<u64>,
}

/// One level of an actor's ancestry, nearest parent first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ancestor {
    pub pid: u32,
    pub comm: Vec<u8>,
    pub exe: Vec<u8>,
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
    exited: VecDeque<(u32, u64, u64)>,
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
            exited: VecDeque::new(),
            max_entries: max_entries.max(1),
            grace_ns,
            tick_ns: tick_ns.max(1),
            evicted: 0,
        }
    }

    fn same_start(&self, a: u64, b: u64) -> bool {
        a.abs_diff(b) < self.tick_ns
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
            live: self.procs.len() - self.exited.len().min(self.procs.len()),
            exited_pending: self.exited.len(),
            evicted: self.evicted,
        }
    }

    /// Inserts or replaces an entry (seeding from /proc, or a new process).
    pub fn insert(&mut self, entry: ProcessEntry) {
        self.procs.insert(entry.pid, entry);
        self.enforce_bound();
    }

    pub fn on_fork(&mut self, f: &ForkInfo) {
        // Until it execs, the child runs its parent's image.
        let (exe, comm) = match self.procs.get(&f.parent_tgid) {
            Some(p) => (p.exe.clone(), p.comm.clone()),
            None => (Vec::new(), f.comm.clone()),
        };
        self.insert(ProcessEntry {
            pid: f.pid,
            start_ns: f.start_ns,
            ppid: f.parent_tgid,
            comm,
            exe,
            uid: f.creds.uid,
            exited_ns: None,
        });
    }

    pub fn on_exec(&mut self, e: &ExecInfo) {
        let entry = ProcessEntry {
            pid: e.tgid,
            start_ns: e.start_ns,
            ppid: e.ppid,
            comm: e.comm.clone(),
            exe: e.filename.clone(),
            uid: e.creds.uid,
            exited_ns: None,
        };
        self.insert(entry);
    }

    pub fn on_exit(&mut self, x: &ExitInfo) {
        let tick = self.tick_ns;
        if let Some(p) = self.procs.get_mut(&x.pid)
            && p.start_ns.abs_diff(x.start_ns) < tick
            && p.exited_ns.is_none()
        {
            p.exited_ns = Some(x.ktime_ns);
            self.exited.push_back((x.pid, x.start_ns, x.ktime_ns));
        }
    }

    /// Forgets processes that exited more than the grace period before `now_ns`.
    pub fn reap(&mut self, now_ns: u64) {
        while let Some(&(pid, start, at)) = self.exited.front() {
            if now_ns.saturating_sub(at) < self.grace_ns {
                break;
            }
            self.exited.pop_front();
            self.remove_if_exited(pid, start);
        }
    }

    fn remove_if_exited(&mut self, pid: u32, start: u64) {
        let matches = self
            .procs
            .get(&pid)
            .is_some_and(|p| p.exited_ns.is_some() && self.same_start(p.start_ns, start));
        if matches {
            self.procs.remove(&pid);
        }
    }

    fn enforce_bound(&mut self) {
        while self.procs.len() > self.max_entries {
            if let Some((pid, start, _)) = self.exited.pop_front() {
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
                self.procs.remove(&pid);
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
                comm: p.comm.clone(),
                exe: p.exe.clone(),
            });
            cur = p.ppid;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use agent_common::Creds;

    use super::*;

    const TICK: u64 = 10_000_000;

    fn entry(pid: u32, ppid: u32, comm: &str) -> ProcessEntry {
        ProcessEntry {
            pid,
            start_ns: u64::from(pid) * 1_000_000_000,
            ppid,
            comm: comm.as_bytes().to_vec(),
            exe: format!("/bin/{comm}").into_bytes(),
            uid: 0,
            exited_ns: None,
        }
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
            comm: b"x".to_vec(),
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
        assert_eq!(e.exe, b"/bin/bash");
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
