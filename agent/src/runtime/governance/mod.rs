//! Policy and grants at run time: loads the policy (refusing a broken one at
//! start), compiles its kernel part, reloads on change (keeping the old
//! policy when the new one is broken), serves the root-only control socket
//! for grants, and follows grants through creation, use, revocation and
//! expiry. It changes nothing itself: every call returns the [`Effect`]s
//! the runtime applies to the pipeline (a policy to install, the grants to
//! give the kernel, records to write), so every grant, use, revocation,
//! expiry, refusal and reload becomes a record.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::{
    event::Kind,
    grants::{
        FileRejection, Grant, GrantEvent, GrantSigner, GrantStore,
        control::{self, Approvals, ControlEvent},
        store::SystemClock,
    },
    policy::{
        Diagnostic, PolicySet, PolicyWatcher,
        kernel::{KernelPolicy, kernel_policy},
    },
    sys::users::UserDb,
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
    /// Where passwd and group are (`/etc`).
    pub etc: PathBuf,
}

/// What governance asks of the pipeline, in order.
pub enum Effect {
    /// Decide by `set` from now on; `kernel` is its part the kernel decides.
    Install {
        set: Arc<PolicySet>,
        kernel: KernelPolicy,
    },
    /// These are the live grants: give them to the kernel.
    Grants(Vec<Grant>),
    /// Write a record of `kind` (policy, grant) with this detail.
    Record {
        kind: Kind,
        detail: serde_json::Value,
    },
    /// Write a record of `kind` with this detail that is an alert.
    Alert {
        kind: Kind,
        detail: serde_json::Value,
        verdict: crate::decide::Verdict,
    },
}

pub struct Governance {
    watcher: PolicyWatcher,
    grants: Arc<Mutex<GrantStore>>,
    events: mpsc::Receiver<ControlEvent>,
    /// For the NATS side of approvals, whose events come the same way.
    sender: mpsc::Sender<ControlEvent>,
    used: HashSet<String>,
    /// Role and user names of the kernel rules, expanded to uids.
    users: UserDb,
    hash: String,
    /// The installed policy and what the kernel was given for it: its
    /// user and role names are compiled to uids, which go stale when
    /// /etc/passwd or /etc/group change.
    installed: Option<(Arc<PolicySet>, KernelPolicy)>,
    /// The programs its kernel rules name, as the kernel knows them: by
    /// inode, which a package upgrade replaces under the same path.
    programs: Vec<(String, Option<(u64, u64)>)>,
    /// Why the last installed policy's deny rules could not all be decided
    /// in the kernel.
    kernel_notes: Vec<String>,
}

/// Loads the policy; a broken one is a startup error naming file:line:column.
pub fn load_policy(dirs: &[PathBuf]) -> Result<PolicySet, GovernanceError> {
    PolicySet::load_dirs(dirs).map_err(GovernanceError::Policy)
}

fn grant_record(e: &GrantEvent) -> Effect {
    Effect::Record {
        kind: Kind::Grant,
        detail: json!({ "event": e.event, "grant": e.grant }),
    }
}

/// The alert for a grants file refused at open: no grant from it is used.
fn file_rejected_record(r: &FileRejection) -> Effect {
    Effect::Alert {
        kind: Kind::Grant,
        detail: json!({
            "event": "file_rejected", "path": r.path, "moved_to": r.moved_to, "reason": r.reason,
        }),
        verdict: crate::decide::Verdict {
            action: "alert",
            enforced: None,
            grant_id: None,
            reason: Some(format!(
                "{}; no grant from it is used, the file was moved to {}",
                r.reason, r.moved_to
            )),
            rule: Some("grants-file-seal".to_owned()),
            severity: Some("high".to_owned()),
            tags: Vec::new(),
        },
    }
}

/// A grant request made on this host, waiting for its approval.
fn requested_record(signed: &crate::grants::approval::SignedRequest) -> Effect {
    let body = signed.verify_self().ok();
    if let Some(b) = &body {
        tracing::info!(request = %b.id, user = %b.user, target = %b.target, "grant requested");
    }
    Effect::Record {
        kind: Kind::Grant,
        detail: json!({"event": "requested", "request": body, "request_hash": signed.hash()}),
    }
}

/// What the NATS side did with an approval; an alert when only a forgery
/// or a wrong key explains it.
fn approval_record(
    detail: serde_json::Value,
    alert: Option<&crate::grants::approval::Refusal>,
) -> Effect {
    let Some(refusal) = alert else {
        return Effect::Record {
            kind: Kind::Grant,
            detail,
        };
    };
    Effect::Alert {
        kind: Kind::Grant,
        detail,
        verdict: crate::decide::Verdict {
            action: "alert",
            enforced: None,
            grant_id: None,
            reason: Some(format!("grant approval refused: {refusal}")),
            rule: Some("grant-approval".to_owned()),
            severity: Some("high".to_owned()),
            tags: Vec::new(),
        },
    }
}

impl Governance {
    /// Opens the grants store (sealed by `signer`, the host key) and the
    /// control socket, serving it until `shutdown`. Also returns the
    /// records of grants that expired while the agent was down and of a
    /// grants file refused because its seal did not verify.
    pub fn start(
        cfg: &GovernanceConfig,
        set: &PolicySet,
        signer: Arc<dyn GrantSigner>,
        approvals: Arc<Approvals>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(Self, Vec<Effect>), GovernanceError> {
        if let Some(dir) = cfg.grants_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let (store, expired) = GrantStore::open(
            &cfg.grants_path,
            cfg.grants_max,
            Arc::new(SystemClock),
            signer,
        )?;
        let mut effects: Vec<Effect> = store
            .file_rejection()
            .map(file_rejected_record)
            .into_iter()
            .collect();
        effects.extend(expired.iter().map(grant_record));
        let grants = Arc::new(Mutex::new(store));
        let listener = control::bind(&cfg.control_socket)?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(control::serve_with(
            listener,
            Arc::clone(&grants),
            approvals,
            tx.clone(),
            shutdown,
        ));
        let gov = Self {
            watcher: PolicyWatcher::new(cfg.policy_dirs.clone(), set.content_hash()),
            grants,
            events: rx,
            sender: tx,
            used: HashSet::new(),
            users: UserDb::new(&cfg.etc),
            hash: set.content_hash().to_owned(),
            installed: None,
            programs: Vec::new(),
            kernel_notes: Vec::new(),
        };
        Ok((gov, effects))
    }

    /// The grants store, for the decider.
    pub fn store(&self) -> Arc<Mutex<GrantStore>> {
        Arc::clone(&self.grants)
    }

    /// Where the NATS side of approvals reports (as the control socket does).
    pub fn sender(&self) -> mpsc::Sender<ControlEvent> {
        self.sender.clone()
    }

    /// Notes on the installed policy's deny rules the kernel cannot decide.
    pub fn kernel_notes(&self) -> &[String] {
        &self.kernel_notes
    }

    /// Installs `set`: the policy, then the live grants (a unit's cgroups
    /// and an executable's processes are looked up again).
    pub fn install(&mut self, set: Arc<PolicySet>) -> Vec<Effect> {
        self.users.refresh();
        let (kernel, notes) = kernel_policy(&set, &self.users);
        for n in &notes {
            tracing::warn!("{n}");
        }
        self.kernel_notes = notes;
        self.hash = set.content_hash().to_owned();
        self.programs = programs(&kernel);
        self.installed = Some((Arc::clone(&set), kernel.clone()));
        let mut effects = vec![Effect::Install { set, kernel }];
        effects.extend(self.live_grants());
        effects
    }

    /// Reads the policy from `dirs` from now on (a reloaded `[policy]`);
    /// the caller reloads.
    pub fn set_policy_dirs(&mut self, dirs: Vec<PathBuf>) {
        self.watcher.set_dirs(dirs);
    }

    /// Reloads now (SIGHUP), whether or not the files look changed.
    pub fn reload_now(&mut self) -> Vec<Effect> {
        let r = self.watcher.reload();
        self.reloaded(Some(r))
    }

    /// Reloads the policy when its files changed.
    pub fn poll_reload(&mut self) -> Vec<Effect> {
        let r = self.watcher.poll();
        self.reloaded(r)
    }

    fn reloaded(&mut self, r: Option<Result<PolicySet, Vec<Diagnostic>>>) -> Vec<Effect> {
        match r {
            None => Vec::new(),
            Some(Ok(set)) => {
                let rules = set.rule_count();
                let mut effects = self.install(Arc::new(set));
                tracing::info!(hash = %self.hash, rules, "policy reloaded");
                effects.push(Effect::Record {
                    kind: Kind::Policy,
                    detail: json!({
                        "event": "loaded", "hash": self.hash, "rules": rules,
                        "kernel_notes": self.kernel_notes,
                    }),
                });
                effects
            }
            Some(Err(diags)) => {
                let errors: Vec<String> = diags.iter().map(ToString::to_string).collect();
                for e in &errors {
                    tracing::error!("policy reload rejected, the running policy stays: {e}");
                }
                vec![Effect::Record {
                    kind: Kind::Policy,
                    detail: json!({
                        "event": "rejected", "kept_hash": self.hash, "errors": errors,
                    }),
                }]
            }
        }
    }

    /// Installs the policy again when a change to the user or group
    /// database changed the uids its kernel rules name (a user added to
    /// an exempt role, a protected user's uid reassigned), so the kernel
    /// never decides by a stale list.
    pub fn poll_users(&mut self) -> Vec<Effect> {
        if !self.users.refresh() {
            return Vec::new();
        }
        let Some((set, old)) = self.installed.clone() else {
            return Vec::new();
        };
        let (kernel, _) = kernel_policy(&set, &self.users);
        if kernel == old {
            return Vec::new();
        }
        self.reinstall(set, "users or groups changed".to_owned())
    }

    /// Installs the policy again when a program its kernel rules name was
    /// replaced (a package upgrade writes a new inode under the old path),
    /// so the kernel still knows it when it next runs.
    pub fn poll_programs(&mut self) -> Vec<Effect> {
        let Some((set, kernel)) = self.installed.clone() else {
            return Vec::new();
        };
        let now = programs(&kernel);
        let changed: Vec<&str> = now
            .iter()
            .zip(&self.programs)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.0.as_str())
            .collect();
        if changed.is_empty() {
            return Vec::new();
        }
        let reason = format!("programs replaced: {}", changed.join(", "));
        self.reinstall(set, reason)
    }

    fn reinstall(&mut self, set: Arc<PolicySet>, reason: String) -> Vec<Effect> {
        tracing::info!(hash = %self.hash, %reason, "kernel rules reinstalled");
        let mut effects = self.install(set);
        effects.push(Effect::Record {
            kind: Kind::Policy,
            detail: json!({
                "event": "reinstalled", "hash": self.hash, "reason": reason,
                "kernel_notes": self.kernel_notes,
            }),
        });
        effects
    }

    /// Control-socket events and expiries since the last call.
    pub fn poll_grants(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut changed = false;
        while let Ok(ev) = self.events.try_recv() {
            match ev {
                ControlEvent::Grant(g) => {
                    tracing::info!(grant = %g.grant.id, user = %g.grant.user, event = ?g.event, "grant");
                    effects.push(grant_record(&g));
                    changed = true;
                }
                ControlEvent::Requested(signed) => effects.push(requested_record(&signed)),
                ControlEvent::Approval { detail, alert } => {
                    effects.push(approval_record(detail, alert.as_ref()));
                }
                ControlEvent::Refused { uid, pid } => {
                    tracing::warn!(uid, ?pid, "refused a control request from a non-root peer");
                    effects.push(Effect::Record {
                        kind: Kind::Grant,
                        detail: json!({"event": "refused", "peer": {"uid": uid, "pid": pid}}),
                    });
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
            effects.push(grant_record(g));
            changed = true;
        }
        if changed {
            effects.extend(self.live_grants());
        }
        effects
    }

    /// A grant named by a decision was used: recorded once per grant.
    pub fn note_use(&mut self, grant_id: &str) -> Option<Effect> {
        if !self.used.insert(grant_id.to_owned()) {
            return None;
        }
        let ev = self.grants.lock().ok().and_then(|s| s.used(grant_id))?;
        Some(grant_record(&ev))
    }

    /// Every live grant, for the kernel (none with a poisoned store: the
    /// kernel keeps what it has).
    fn live_grants(&self) -> Option<Effect> {
        let s = self.grants.lock().ok()?;
        Some(Effect::Grants(s.list().into_iter().cloned().collect()))
    }
}

/// Every program path `kernel` names, with its (inode, device) now.
fn programs(kernel: &KernelPolicy) -> Vec<(String, Option<(u64, u64)>)> {
    use std::os::unix::fs::MetadataExt as _;
    kernel
        .rules
        .iter()
        .flat_map(|r| r.target_exes.iter().chain(&r.exec_paths))
        .map(|p| {
            let id = std::fs::metadata(p).ok().map(|m| (m.ino(), m.dev()));
            (p.clone(), id)
        })
        .collect()
}

#[cfg(test)]
mod tests;
