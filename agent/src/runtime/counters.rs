//! The kernel objects the running agent holds besides the ring: the loaded
//! object itself (dropping it detaches every program), the reader flag,
//! and the counters it reads periodically (events the kernel dropped,
//! failures inside the programs, repeats of aggregated accesses).

use agent_common::{AggKey, EventKind, fault};
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
};
use tracing::error;

use super::AgentError;
use crate::{
    ebpf::{Loaded, enforce::Enforcer, tracefs::TracefsState},
    record::LostCounts,
};

/// What start-up hands on from a loaded object besides [`Kernel`].
pub(super) struct Handover {
    pub(super) ring: RingBuf<MapData>,
    pub(super) enforcer: Enforcer,
    pub(super) attached: Vec<&'static str>,
    pub(super) tracefs: TracefsState,
    pub(super) mechanism_reason: String,
    pub(super) objects: Vec<agent_common::ObjectKey>,
    /// The programs' log ring, with `--kernel-log`.
    pub(super) kernel_log: Option<crate::ebpf::kernel_log::Logger>,
}

pub(super) struct Kernel {
    /// Owns the programs and their links: held, never read; dropping it
    /// detaches every program.
    _ebpf: Ebpf,
    /// Set while the agent waits for the kernel to wake it.
    pub(super) reader_idle: Array<MapData, u32>,
    pub(super) lost: PerCpuArray<MapData, u64>,
    pub(super) faults: PerCpuArray<MapData, u64>,
    pub(super) agg: PerCpuHashMap<MapData, AggKey, u64>,
}

impl Kernel {
    /// Takes a loaded object apart: what the runtime keeps, and the rest
    /// (the ring, the enforcer for the pipeline, what the start record
    /// reports).
    pub(super) fn split(l: Loaded) -> (Self, Handover) {
        let k = Self {
            _ebpf: l.ebpf,
            reader_idle: l.reader_idle,
            lost: l.lost,
            faults: l.faults,
            agg: l.agg,
        };
        let rest = Handover {
            ring: l.ring,
            enforcer: l.enforcer,
            attached: l.attached,
            tracefs: l.tracefs,
            mechanism_reason: l.mechanism_reason,
            objects: l.objects,
            kernel_log: l.kernel_log,
        };
        (k, rest)
    }

    /// Asks the kernel to wake the agent at the next record-making event.
    pub(super) fn sleep_on_wake(&mut self) -> Result<(), AgentError> {
        self.reader_idle
            .set(0, 1, 0)
            .map_err(AgentError::ReaderFlag)
    }

    /// The kernel's drop counters, summed over CPUs.
    pub(super) fn lost(&self) -> LostCounts {
        let sum = |k: EventKind| -> u64 {
            match self.lost.get(&(k as u32), 0) {
                Ok(v) => v.iter().sum(),
                Err(e) => {
                    error!(error = %e, "reading the kernel drop counters failed");
                    0
                }
            }
        };
        LostCounts {
            exec: sum(EventKind::Exec),
            fork: sum(EventKind::Fork),
            exit: sum(EventKind::Exit),
            access: sum(EventKind::Access),
            undecodable: 0,
            spool_shed: 0,
        }
    }

    /// The programs' failure counters, summed over CPUs, in
    /// `agent_common::fault::NAMES` order.
    pub(super) fn faults(&self) -> [u64; fault::COUNT] {
        let mut out = [0; fault::COUNT];
        for (site, slot) in (0u32..).zip(out.iter_mut()) {
            match self.faults.get(&site, 0) {
                Ok(v) => *slot = v.iter().sum(),
                Err(e) => error!(error = %e, site, "reading the kernel fault counters failed"),
            }
        }
        out
    }

    /// Cumulative repeat counts per aggregated access, summed over CPUs.
    pub(super) fn aggregates(&self) -> Vec<(AggKey, u64)> {
        let mut out = Vec::new();
        for item in self.agg.iter() {
            match item {
                Ok((k, v)) => out.push((k, v.iter().sum())),
                // An entry evicted during iteration: its repeats show next window.
                Err(e) => tracing::debug!(error = %e, "reading an aggregate entry failed"),
            }
        }
        out
    }
}
