//! The inventory as records: one `inventory` snapshot of the host's debug
//! exposure (decided on the host's own findings: `/etc/ld.so.preload`,
//! kernel settings), then one `inventory` finding per traced process,
//! debug port and process with switches, its process as the actor, each
//! decided on its own `findings`, so a rule alerts on each and names it.

use serde_json::{Value, json};

use super::Pipeline;
use crate::{
    decide::PolicyDetail,
    enrich::{ActorFacts, Escapes},
    event::Kind,
    inventory::Inventory,
    record::Parts,
};

impl Pipeline {
    /// Writes the snapshot and its findings, all stamped `now_ns`.
    pub fn report_inventory(&mut self, now_ns: u64, inv: &Inventory) {
        let mut detail = match serde_json::to_value(inv) {
            Ok(Value::Object(m)) => m,
            _ => {
                self.stats.serialize_errors += 1;
                tracing::error!("the inventory could not be serialized");
                return;
            }
        };
        detail.insert("event".into(), json!("snapshot"));
        let verdict = self
            .decider
            .decide_host(Kind::Inventory, findings(&inv.findings));
        self.emit(
            now_ns,
            Parts {
                kind: Kind::Inventory,
                actor: None,
                target: None,
                detail: Value::Object(detail),
                verdict: verdict.as_ref(),
            },
        );
        for t in &inv.traced {
            let detail = json!({
                "event": "finding",
                "finding": "traced",
                "tracer_debugger": t.debugger,
                "findings": t.findings,
            });
            self.finding(
                now_ns,
                t.tracer.pid,
                Some(t.process.pid),
                detail,
                &t.findings,
            );
        }
        for p in &inv.debug_ports {
            let mut detail = json!({
                "event": "finding",
                "finding": "debug_port",
                "port": p.port,
                "bind": p.bind,
                "interface": p.interface,
                "findings": p.findings,
            });
            if let Some(r) = p.risk {
                detail["risk"] = json!(r);
            }
            self.finding(now_ns, p.process.pid, None, detail, &p.findings);
        }
        for w in &inv.switches {
            let detail = json!({
                "event": "finding",
                "finding": "debug_switches",
                "switches": w.switches,
                "findings": w.findings,
            });
            self.finding(now_ns, w.process.pid, None, detail, &w.findings);
        }
    }

    /// One finding: `pid` is the actor (the tracer of a traced process),
    /// `target` the traced process.
    fn finding(
        &mut self,
        now_ns: u64,
        pid: u32,
        target: Option<u32>,
        detail: Value,
        names: &[String],
    ) {
        let mut esc = Escapes(Vec::new());
        let facts = ActorFacts::of_entry(pid, self.table.get(pid));
        let actor = self.enricher.actor(&facts, &self.table, &mut esc);
        let target = target.map(|t| self.enricher.target(t, t, &self.table, &mut esc));
        let verdict =
            self.decider
                .decide(Kind::Inventory, &actor, target.as_ref(), findings(names));
        self.emit(
            now_ns,
            Parts {
                kind: Kind::Inventory,
                actor: Some(&actor),
                target: target.as_ref(),
                detail,
                verdict: verdict.as_ref(),
            },
        );
    }
}

fn findings(names: &[String]) -> PolicyDetail {
    PolicyDetail {
        findings: names.to_vec(),
        ..PolicyDetail::default()
    }
}
