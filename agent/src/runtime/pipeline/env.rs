//! The environment switches the kernel captured at a process's exec (an
//! `ExecEnv` event just before the exec event), held until that exec's
//! record takes them. Only the configured names are kept: the kernel
//! matches on their first eight bytes.

use std::collections::{BTreeMap, HashMap};

use agent_common::env_flags;

use crate::{enrich::Escapes, event::EnvInfo};

/// Processes whose captured environment waits for their exec event; a
/// burst of lost exec events cannot grow it past this.
const MAX_PENDING: usize = 4096;

pub(super) struct PendingEnv {
    pending: HashMap<u32, EnvInfo>,
    /// Exact names to report.
    names: Vec<String>,
}

impl PendingEnv {
    pub(super) fn new(names: Vec<String>) -> Self {
        Self {
            pending: HashMap::new(),
            names,
        }
    }

    pub(super) fn offer(&mut self, e: EnvInfo) {
        if self.pending.len() >= MAX_PENDING {
            // Their execs were lost (and counted so): nothing will take them.
            self.pending.clear();
        }
        self.pending.insert(e.tgid, e);
    }

    /// The captured variables of the exec of (`tgid`, `start_ns`): name
    /// to value (escaped like argv, `env` in `escaped`), and the flags.
    pub(super) fn take(
        &mut self,
        tgid: u32,
        start_ns: u64,
        esc: &mut Escapes,
    ) -> (BTreeMap<String, String>, Vec<&'static str>) {
        let mut vars = BTreeMap::new();
        let mut flags = Vec::new();
        let Some(e) = self
            .pending
            .remove(&tgid)
            .filter(|e| e.start_ns == start_ns)
        else {
            return (vars, flags);
        };
        for v in &e.vars {
            let Some(eq) = v.iter().position(|&b| b == b'=') else {
                continue;
            };
            let name = &v[..eq];
            if !self.names.iter().any(|n| n.as_bytes() == name) {
                continue;
            }
            vars.insert(esc.text("env", name), esc.text("env", &v[eq + 1..]));
        }
        for (bit, what) in [
            (env_flags::VALUE_CUT, "cut"),
            (env_flags::FULL, "full"),
            (env_flags::INCOMPLETE, "incomplete"),
        ] {
            if e.flags & bit != 0 {
                flags.push(what);
            }
        }
        (vars, flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(tgid: u32, start_ns: u64, vars: &[&[u8]]) -> EnvInfo {
        EnvInfo {
            ktime_ns: 1,
            tgid,
            start_ns,
            vars: vars.iter().map(|v| v.to_vec()).collect(),
            flags: env_flags::VALUE_CUT,
        }
    }

    #[test]
    fn exact_names_of_the_same_process_only() {
        let mut p = PendingEnv::new(vec!["LD_PRELOAD".into(), "NODE_OPTIONS".into()]);
        // The kernel matched on 8 bytes: LD_PRELOAD_X shares them.
        p.offer(info(
            7,
            100,
            &[
                b"LD_PRELOAD=/tmp/x.so",
                b"LD_PRELOAD_X=1",
                b"NODE_OPTIONS=\xff",
            ],
        ));
        let mut esc = Escapes(Vec::new());
        assert!(p.take(7, 99, &mut esc).0.is_empty(), "an earlier process");
        p.offer(info(
            7,
            100,
            &[
                b"LD_PRELOAD=/tmp/x.so",
                b"LD_PRELOAD_X=1",
                b"NODE_OPTIONS=\xff",
            ],
        ));
        let (vars, flags) = p.take(7, 100, &mut esc);
        assert_eq!(vars.len(), 2, "{vars:?}");
        assert_eq!(vars["LD_PRELOAD"], "/tmp/x.so");
        assert_eq!(vars["NODE_OPTIONS"], "\\xff");
        assert_eq!(esc.0, ["env"]);
        assert_eq!(flags, ["cut"]);
        assert!(p.take(7, 100, &mut esc).0.is_empty(), "taken once");
    }
}
