//! Which debug interface a signal or a listening port belongs to, from
//! what each process was started with: the switches of its exec record
//! are kept per process (a JVM started with JDWP that listens later), and
//! forgotten at its exit. Signals to processes that are no runtime and
//! ports that serve no debug interface are not records.

use std::collections::HashMap;

use crate::enrich::switches::{self, Switch};

/// Processes remembered; a burst of short-lived ones with switches cannot
/// grow it past this.
const MAX_PROCESSES: usize = 16_384;

#[derive(Default)]
pub(super) struct DebugInterfaces {
    /// tgid -> (start time, interfaces it was started with).
    by_process: HashMap<u32, (u64, Vec<&'static str>)>,
}

impl DebugInterfaces {
    pub(super) fn on_exec(&mut self, tgid: u32, start_ns: u64, found: &[Switch]) {
        if found.is_empty() {
            self.by_process.remove(&tgid);
            return;
        }
        if self.by_process.len() >= MAX_PROCESSES {
            self.by_process.clear();
        }
        let names = found.iter().map(|s| s.interface).collect();
        self.by_process.insert(tgid, (start_ns, names));
    }

    pub(super) fn on_exit(&mut self, tgid: u32) {
        self.by_process.remove(&tgid);
    }

    /// The interface a port opened by (`tgid`, `start_ns`) running `exe`
    /// serves, if any.
    pub(super) fn port(
        &self,
        tgid: u32,
        start_ns: u64,
        exe: &str,
        port: u16,
    ) -> Option<&'static str> {
        let started_with = self
            .by_process
            .get(&tgid)
            .filter(|(s, _)| *s == start_ns)
            .map_or(&[][..], |(_, v)| v.as_slice());
        switches::port_interface(started_with, exe, port)
    }
}
