//! `debugmon approve`: an approver's side of fleet approvals (docs/review.md,
//! "Approvals"). Reads the hosts' signed grant requests from the grants
//! stream on NATS, shows what would be approved, and publishes an approval
//! of one request's exact content signed with the approver's key.
//!
//! - `approve --create-key --key FILE --name NAME`: makes the approver key
//!   (mode 0600) and prints `NAME:HEXKEY`, the line hosts list in
//!   `grants.approvers`;
//! - `approve --list`: requests not expired, with the approvals seen (only
//!   the host knows whose keys count; its records say what it did);
//! - `approve ID --key FILE --name NAME`: approves request ID.
//!
//! A request's host signature is checked against the trusted-keys file
//! (`debugmon key add`) when it names the host; exit codes 0 ok, 1 runtime
//! error or nothing to approve, 2 usage error.

use std::{path::PathBuf, process::ExitCode};

use chrono::Utc;

use super::{nats::NatsFlags, runtime};
use crate::{
    error::error_chain,
    grants::{
        approval::{ApprovalBody, RequestBody, SignedApproval, SignedRequest},
        format_duration,
    },
    record::{
        seal::load_or_create_key,
        verify::trust::{DEFAULT_TRUSTED_KEYS, TrustedKeys},
    },
    runtime::approvals::{approval_subject, grants_stream},
    sink::nats::{NatsConfig, connect, jetstream, read::read_subject},
};

#[derive(clap::Args)]
pub struct Args {
    /// The request to approve, as `debugmon grant --request` or `--list` shows it
    id: Option<String>,
    /// List the open requests instead
    #[arg(long, conflicts_with = "id")]
    list: bool,
    /// Make the approver key FILE (when absent) and print NAME:HEXKEY for the hosts' config
    #[arg(long, conflicts_with_all = ["id", "list"])]
    create_key: bool,
    /// The approver's Ed25519 key file (32 bytes, mode 0600)
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The approver's name, as the hosts' `grants.approvers` lists it with the key
    #[arg(long)]
    name: Option<String>,
    /// NATS server URL; overrides the config's
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Config file whose `[nats]` gives stream, TLS and credentials
    #[arg(long)]
    config: Option<PathBuf>,
    /// Subject prefix; overrides the config's
    #[arg(long)]
    subject_prefix: Option<String>,
    /// Hosts' public keys, to check who signed a request
    #[arg(long, value_name = "PATH", default_value = DEFAULT_TRUSTED_KEYS)]
    trusted_keys: PathBuf,
}

/// An open request as read from the stream, with what its signature says.
struct Found {
    signed: SignedRequest,
    body: RequestBody,
    /// Whether the trusted-keys file binds the signing key to the host.
    trusted: Option<bool>,
    /// Approvals of it seen on the stream: (approver name, hex key). Only
    /// the host knows whether a key is an approver's, so they are shown,
    /// and the same key is not asked to approve twice.
    approvals: Vec<(String, String)>,
}

pub fn main(a: Args) -> ExitCode {
    if a.create_key {
        return create_key(&a);
    }
    let nats = match (NatsFlags {
        url: a.nats.clone(),
        config: a.config.clone(),
        subject_prefix: a.subject_prefix.clone(),
    })
    .resolve()
    {
        Ok(n) => n,
        Err(code) => return code,
    };
    let trust = match TrustedKeys::load(&a.trusted_keys) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("debugmon approve: {}", error_chain(&e));
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let open = match rt.block_on(open_requests(&nats, trust.as_ref())) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("debugmon approve: {}", error_chain(&e));
            return ExitCode::from(1);
        }
    };
    if a.list {
        if open.is_empty() {
            println!("no open grant requests");
        }
        for f in &open {
            println!("{}", describe(f));
        }
        return ExitCode::SUCCESS;
    }
    let Some(id) = a.id.as_deref() else {
        eprintln!("debugmon approve: name a request ID, or use --list or --create-key");
        return ExitCode::from(2);
    };
    let (Some(key_path), Some(name)) = (&a.key, &a.name) else {
        eprintln!("debugmon approve: --key and --name are required to approve");
        return ExitCode::from(2);
    };
    let Some(found) = open.iter().find(|f| f.body.id == id) else {
        eprintln!(
            "debugmon approve: no open request {id} (approved already, expired, or never made)"
        );
        return ExitCode::from(1);
    };
    if found.trusted == Some(false) {
        eprintln!(
            "debugmon approve: request {id} is signed by a key the trusted-keys file does not give host {}: not approved",
            found.body.host
        );
        return ExitCode::from(1);
    }
    let key = match existing_key(key_path) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let ours = hex::encode(key.verifying_key().as_bytes());
    if found.approvals.iter().any(|(_, k)| *k == ours) {
        eprintln!("debugmon approve: request {id} is already approved with this key");
        return ExitCode::from(1);
    }
    let approval = SignedApproval::sign(&found.signed, &found.body, name, &key, Utc::now());
    println!("approving {}", describe(found));
    match rt.block_on(publish(&nats, &found.body.host, &approval)) {
        Ok(()) => {
            println!(
                "approved by {name}: the agent on {} makes the grant",
                found.body.host
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("debugmon approve: publishing the approval: {e}");
            ExitCode::from(1)
        }
    }
}

fn describe(f: &Found) -> String {
    let b = &f.body;
    let r = &b.requester;
    let who = r.login_user.clone().map_or_else(
        || format!("uid {} without a login user", r.uid),
        |u| format!("login user {u}"),
    );
    let trust = match f.trusted {
        Some(true) => "host key trusted",
        Some(false) => "HOST KEY NOT TRUSTED",
        None => "host key not checked (no trusted-keys entry)",
    };
    let seen = if f.approvals.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = f
            .approvals
            .iter()
            .map(|(n, k)| format!("{n} (key {}…)", k.get(..12).unwrap_or(k)))
            .collect();
        format!("  approvals seen: {}", names.join(", "))
    };
    format!(
        "{}  host {}  {} on {} ({}) for {}  reason {:?}  asked by {who}  until {}  [{trust}]{seen}",
        b.id,
        b.host,
        b.user,
        b.target,
        b.mode.as_str(),
        format_duration(std::time::Duration::from_secs(b.duration_secs)),
        b.reason,
        b.expires.to_rfc3339(),
    )
}

fn create_key(a: &Args) -> ExitCode {
    let (Some(path), Some(name)) = (&a.key, &a.name) else {
        eprintln!("debugmon approve --create-key: --key and --name are required");
        return ExitCode::from(2);
    };
    if name.is_empty() || name.contains([':', ',']) || name.contains(char::is_whitespace) {
        eprintln!("debugmon approve: --name {name:?}: no spaces, `:` or `,`");
        return ExitCode::from(2);
    }
    match load_or_create_key(path) {
        Ok(k) => super::print(&format!(
            "{name}:{}",
            hex::encode(k.verifying_key().as_bytes())
        )),
        Err(e) => {
            eprintln!("debugmon approve: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// The key at `path`, never a new one: approving with a key just made
/// would sign with a key no host trusts.
fn existing_key(path: &std::path::Path) -> Result<ed25519_dalek::SigningKey, ExitCode> {
    if !path.exists() {
        eprintln!(
            "debugmon approve: no key {} (make one with --create-key)",
            path.display()
        );
        return Err(ExitCode::from(2));
    }
    load_or_create_key(path).map_err(|e| {
        eprintln!("debugmon approve: {}", error_chain(&e));
        ExitCode::from(1)
    })
}

/// Requests in the stream that are whole and unexpired, with the
/// approvals seen for each.
async fn open_requests(
    nats: &NatsConfig,
    trust: Option<&TrustedKeys>,
) -> Result<Vec<Found>, crate::sink::nats::NatsError> {
    let mut cfg = nats.clone();
    cfg.stream.name = grants_stream(nats);
    let prefix = &nats.subject_prefix;
    let mut requests = Vec::new();
    read_subject(&cfg, &format!("{prefix}.grants.request.>"), |p| {
        if let Ok(s) = serde_json::from_slice::<SignedRequest>(p) {
            requests.push(s);
        }
    })
    .await?;
    let mut approved = Vec::new();
    read_subject(&cfg, &format!("{prefix}.grants.approval.>"), |p| {
        let Ok(a) = serde_json::from_slice::<SignedApproval>(p) else {
            return;
        };
        if let Ok(b) = serde_json::from_str::<ApprovalBody>(&a.body) {
            approved.push((b.request_hash, b.approver, a.key.to_ascii_lowercase()));
        }
    })
    .await?;
    let now = Utc::now();
    let mut out: Vec<Found> = Vec::new();
    for signed in requests {
        // Not whole: a forgery or damage, never shown as approvable.
        let Ok(body) = signed.verify_self() else {
            continue;
        };
        if body.expires <= now {
            continue;
        }
        if out.iter().any(|f| f.signed.hash() == signed.hash()) {
            continue;
        }
        let trusted = trust
            .and_then(|t| t.keys_of(&body.host))
            .map(|keys| keys.iter().any(|k| k.eq_ignore_ascii_case(&signed.key)));
        let hash = signed.hash();
        let approvals = approved
            .iter()
            .filter(|(h, _, _)| *h == hash)
            .map(|(_, n, k)| (n.clone(), k.clone()))
            .collect();
        out.push(Found {
            signed,
            body,
            trusted,
            approvals,
        });
    }
    Ok(out)
}

async fn publish(nats: &NatsConfig, host: &str, a: &SignedApproval) -> Result<(), String> {
    let client = connect(nats).await.map_err(|e| error_chain(&e))?;
    let js = jetstream(nats, client);
    let payload = serde_json::to_vec(a).map_err(|e| e.to_string())?;
    js.publish(approval_subject(&nats.subject_prefix, host), payload.into())
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
