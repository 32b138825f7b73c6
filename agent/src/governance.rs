//! Policy and grants at run time: loads the policy (refusing a broken one at
//! start), compiles its kernel part into the enforcer, keeps the decider
//! current, reloads on change (keeping the old policy when the new one is
//! broken), serves the root-only control socket for grants, and mirrors the
//! live grants into the kernel map with their expiry in boot time. Every
//! grant, use, revocation, expiry, refusal and reload becomes a record.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use agent_common::{GrantKey, grant_scope};
use serde_json::json;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::{
    enforce::{Mechanism, kernel_policy},
    grants::{
        Grant, GrantEvent, GrantStore, GrantTarget,
        control::{self, ControlEvent},
        store::SystemClock,
    },
    host,
    pipeline::Pipeline,
    policy::{Diagnostic, PolicySet, PolicyWatcher},
};

#[derive(Debug, Error)]
pub enum GovernanceError {
    #[error("the policy does not load:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Policy(Vec<Diagnostic>),
    #[error("opening the grants store")]
    Grants(#[from] crate::grants::GrantError),
    #[error("binding the control socket")]
    Control(#[from] control::ControlError),
}

/// Where policy and grants live (from the config file, env and flags).
#[derive(Debug, Clone)]
pub struct GovernanceConfig {
    pub policy_dirs: Vec<PathBuf>,
    pub grants_path: PathBuf,
    pub grants_max: Duration,
    pub control_socket: PathBuf,
}

pub struct Governance {
    watcher: PolicyWatcher,
    pub(crate) grants: Arc<Mutex<GrantStore>>,
    events: mpsc::Receiver<ControlEvent>,
    used: HashSet<String>,
    mechanism: Mechanism,
    pub(crate) hash: String,
}

/// Loads the policy; a broken one is a startup error naming file:line:column.
pub fn load_policy(dirs: &[PathBuf]) -> Result<PolicySet, GovernanceError> {
    PolicySet::load_dirs(dirs).map_err(GovernanceError::Policy)
}

fn grant_record(e: &GrantEvent) -> serde_json::Value {
    json!({ "event": e.event, "grant": e.grant })
}

impl Governance {
    /// Opens the grants store and the control socket, serving it until
    /// `shutdown`. Returns the store's start events (grants expired while down).
    pub fn start(
        cfg: &GovernanceConfig,
        set: &PolicySet,
        mechanism: Mechanism,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(Self, Vec<GrantEvent>), GovernanceError> {
        if let Some(dir) = cfg.grants_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let (store, expired) =
            GrantStore::open(&cfg.grants_path, cfg.grants_max, Arc::new(SystemClock))?;
        let grants = Arc::new(Mutex::new(store));
        let listener = control::bind(&cfg.control_socket)?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(control::serve(listener, Arc::clone(&grants), tx, shutdown));
        Ok((
            Self {
                watcher: PolicyWatcher::new(cfg.policy_dirs.clone(), set.content_hash()),
                grants,
                events: rx,
                used: HashSet::new(),
                mechanism,
                hash: set.content_hash().to_owned(),
            },
            expired,
        ))
    }

    /// Installs `set`: kernel rules into the enforcer, the set into the
    /// decider. Returns the notes on deny rules the kernel cannot decide.
    pub fn install(&mut self, set: Arc<PolicySet>, p: &mut Pipeline) -> Vec<String> {
        let (kpol, notes) = kernel_policy(&set, p.enricher_mut().users());
        let names: HashSet<String> = kpol.rules.iter().map(|r| r.name.clone()).collect();
        if let Err(e) = p.install_kernel_policy(kpol) {
            tracing::error!(error = %crate::ebpf::loader::error_chain(&e), "installing the kernel policy failed");
        }
        for n in &notes {
            tracing::warn!("{n}");
        }
        self.hash = set.content_hash().to_owned();
        let d = p.decider_mut();
        d.replace_set(set);
        d.set_kernel(names, self.mechanism);
        self.sync_kernel_grants(p);
        notes
    }

    /// The grants store, for the decider.
    pub fn store(&self) -> Arc<Mutex<GrantStore>> {
        Arc::clone(&self.grants)
    }

    /// Reloads now (SIGHUP), whether or not the files look changed.
    pub fn reload_now(&mut self, p: &mut Pipeline, now_ns: u64) {
        let r = PolicySet::load_dirs(self.watcher.dirs());
        self.apply_reload(Some(r), p, now_ns);
    }

    /// Reloads the policy when its files changed; records the outcome.
    pub fn poll_reload(&mut self, p: &mut Pipeline, now_ns: u64) {
        let r = self.watcher.poll();
        self.apply_reload(r, p, now_ns);
    }

    fn apply_reload(
        &mut self,
        r: Option<Result<PolicySet, Vec<Diagnostic>>>,
        p: &mut Pipeline,
        now_ns: u64,
    ) {
        match r {
            None => {}
            Some(Ok(set)) => {
                let rules = set.rule_count();
                let notes = self.install(Arc::new(set), p);
                tracing::info!(hash = %self.hash, rules, "policy reloaded");
                p.policy_record(
                    now_ns,
                    json!({
                        "event": "loaded", "hash": self.hash, "rules": rules, "kernel_notes": notes,
                    }),
                );
            }
            Some(Err(diags)) => {
                let errors: Vec<String> = diags.iter().map(ToString::to_string).collect();
                for e in &errors {
                    tracing::error!("policy reload rejected, the running policy stays: {e}");
                }
                p.policy_record(
                    now_ns,
                    json!({
                        "event": "rejected", "kept_hash": self.hash, "errors": errors,
                    }),
                );
            }
        }
    }

    /// Handles control-socket events and expiries; records each.
    pub fn poll_grants(&mut self, p: &mut Pipeline, now_ns: u64) {
        let mut changed = false;
        while let Ok(ev) = self.events.try_recv() {
            match ev {
                ControlEvent::Grant(g) => {
                    tracing::info!(grant = %g.grant.id, user = %g.grant.user, event = ?g.event, "grant");
                    p.grant_record(now_ns, grant_record(&g));
                    changed = true;
                }
                ControlEvent::Refused { uid, pid } => {
                    tracing::warn!(uid, ?pid, "refused a control request from a non-root peer");
                    p.grant_record(
                        now_ns,
                        json!({"event": "refused", "peer": {"uid": uid, "pid": pid}}),
                    );
                }
            }
        }
        let expired = match self.grants.lock() {
            Ok(mut s) => s.expire().unwrap_or_else(|e| {
                tracing::error!(error = %e, "persisting expired grants failed");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        for g in &expired {
            p.grant_record(now_ns, grant_record(g));
            changed = true;
        }
        if changed {
            self.sync_kernel_grants(p);
        }
    }

    /// A grant named by a decision was used: record it once per grant.
    pub fn note_use(&mut self, p: &mut Pipeline, grant_id: &str, now_ns: u64) {
        if !self.used.insert(grant_id.to_owned()) {
            return;
        }
        let ev = self.grants.lock().ok().and_then(|s| s.used(grant_id));
        if let Some(ev) = ev {
            p.grant_record(now_ns, grant_record(&ev));
        }
    }

    /// Mirrors every live grant into the kernel map.
    fn sync_kernel_grants(&mut self, p: &mut Pipeline) {
        let grants: Vec<Grant> = match self.grants.lock() {
            Ok(s) => s.list().into_iter().cloned().collect(),
            Err(_) => return,
        };
        let now_wall = chrono::Utc::now();
        let now_boot = host::boottime_ns();
        let mut keys = Vec::new();
        for g in grants {
            let Some(uid) = p.enricher_mut().users().uid_of(&g.user) else {
                tracing::warn!(user = %g.user, "grant for an unknown user: not given to the kernel");
                continue;
            };
            let left = (g.expires - now_wall).num_nanoseconds().unwrap_or(0).max(0);
            let expiry = now_boot.saturating_add(u64::try_from(left).unwrap_or(0));
            match &g.target {
                GrantTarget::Any => keys.push((
                    GrantKey {
                        uid,
                        scope: grant_scope::ANY,
                        value: 0,
                    },
                    expiry,
                )),
                GrantTarget::Pid(pid) => keys.push((
                    GrantKey {
                        uid,
                        scope: grant_scope::TGID,
                        value: u64::from(*pid),
                    },
                    expiry,
                )),
                GrantTarget::Unit(u) => {
                    for id in p.enricher_mut().cgroup_ids_of_unit(u) {
                        keys.push((
                            GrantKey {
                                uid,
                                scope: grant_scope::CGROUP,
                                value: id,
                            },
                            expiry,
                        ));
                    }
                }
                GrantTarget::Exe(path) => {
                    for pid in p.pids_with_exe(path.as_bytes()) {
                        keys.push((
                            GrantKey {
                                uid,
                                scope: grant_scope::TGID,
                                value: u64::from(pid),
                            },
                            expiry,
                        ));
                    }
                }
            }
        }
        if let Err(e) = p.set_kernel_grants(&keys) {
            tracing::error!(error = %crate::ebpf::loader::error_chain(&e), "updating the kernel's grants failed");
        }
    }
}
