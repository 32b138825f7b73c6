//! Grants approved across the fleet (docs/review.md, "Approvals"): a host
//! signs a grant request with its host key, an approver signs an approval
//! of that exact request with an approver key, and the host installs the
//! grant only when the approval verifies with a key its config lists and
//! matches a request it made itself.
//!
//! - this file: the signed messages ([`SignedRequest`], [`SignedApproval`]),
//!   the approver keys ([`Approvers`]) and the check an approval must pass
//!   ([`check`]), all pure;
//! - [`pending`]: the host's open requests, persisted and signed;
//! - the agent's side on NATS (requests out, approvals in) is
//!   `runtime::approvals`; the approver's is `debugmon approve`.
//!
//! What is signed is the message's JSON body as a string, byte for byte,
//! after a context line: nothing is re-encoded between signer and checker,
//! and a request signature can never pass for an approval's, a record's
//! or the grants file's.

pub mod pending;

use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{AccessMode, Approval, GrantTarget, Requester};

const REQUEST_CONTEXT: &[u8] = b"debugmon grant request v1\n";
const APPROVAL_CONTEXT: &[u8] = b"debugmon grant approval v1\n";

/// What a host asks to be approved: a grant exactly as it would be made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBody {
    /// `r-YYYYMMDD-` and 8 random hex digits.
    pub id: String,
    /// The host name the request is for (its records' `host.name`).
    pub host: String,
    pub user: String,
    pub target: GrantTarget,
    pub mode: AccessMode,
    /// How long the grant lasts once approved.
    pub duration_secs: u64,
    /// The ticket or reason.
    pub reason: String,
    /// Who asked on the host (the control socket's peer and its login user).
    pub requester: Requester,
    /// For a `pid:N` target: when that process started (clock ticks since
    /// boot) at the request; the grant is made for that process only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_tick: Option<u64>,
    pub created: DateTime<Utc>,
    /// After this the request can no longer be approved.
    pub expires: DateTime<Utc>,
}

/// A request as the host signed it with its host key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRequest {
    /// The JSON of a [`RequestBody`], exactly as signed.
    pub body: String,
    /// Standard base64 of the Ed25519 signature.
    pub sig: String,
    /// Hex of the host's public key.
    pub key: String,
}

/// What an approver signs: one request, by its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalBody {
    pub request: String,
    pub host: String,
    /// SHA-256 (hex) of the request's signed body: the approval is of that
    /// content only.
    pub request_hash: String,
    /// The approver's name, as the hosts' config lists it with the key.
    pub approver: String,
    pub approved_at: DateTime<Utc>,
}

/// An approval as the approver signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedApproval {
    /// The JSON of an [`ApprovalBody`], exactly as signed.
    pub body: String,
    pub sig: String,
    /// Hex of the approver's public key.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("bad approver `{0}`: expected NAME:HEXKEY (64 hex digits)")]
    BadApprover(String),
    #[error("approver name `{0}` is listed twice")]
    DuplicateApprover(String),
    #[error("not a signed message: {0}")]
    Malformed(String),
    #[error("the signature does not verify with key {0}")]
    BadSignature(String),
}

/// Why a host refused an approval. Each becomes a record; those that only
/// a forger or a misconfigured approver causes are alerts ([`Self::is_attack`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a signed approval: {0}")]
    Malformed(String),
    #[error("signed by key {0}, which is not an approver key of this host")]
    UnknownKey(String),
    #[error("the signature does not verify with approver {0}'s key")]
    BadSignature(String),
    #[error("signed by {key_owner}'s key but names approver {named}")]
    NameMismatch { key_owner: String, named: String },
    #[error("approves a request of host {0}, not of this host")]
    WrongHost(String),
    #[error(
        "no open request {0} on this host (never made, already approved, or expired before a restart)"
    )]
    UnknownRequest(String),
    #[error("approves other content than request {0} (content hash differs)")]
    HashMismatch(String),
    #[error("request {id} expired at {expires}")]
    Expired { id: String, expires: DateTime<Utc> },
    #[error("two-person rule: {0} may not approve their own request")]
    SelfApproval(String),
}

impl Refusal {
    /// Whether only a forgery or a wrong key explains it (an alert), as
    /// opposed to a late or repeated approval (a record).
    pub fn is_attack(&self) -> bool {
        !matches!(self, Self::UnknownRequest(_) | Self::Expired { .. })
    }

    /// A short name for records: `unknown_key`, `bad_signature`, ...
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownKey(_) => "unknown_key",
            Self::BadSignature(_) => "bad_signature",
            Self::NameMismatch { .. } => "name_mismatch",
            Self::WrongHost(_) => "wrong_host",
            Self::UnknownRequest(_) => "unknown_request",
            Self::HashMismatch(_) => "hash_mismatch",
            Self::Expired { .. } => "expired",
            Self::SelfApproval(_) => "self_approval",
        }
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn signed_bytes(context: &[u8], body: &str) -> Vec<u8> {
    let mut out = context.to_vec();
    out.extend_from_slice(body.as_bytes());
    out
}

fn verify_sig(context: &[u8], body: &str, sig: &str, key: &VerifyingKey) -> bool {
    let Some(sig) = b64()
        .decode(sig)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    key.verify(&signed_bytes(context, body), &Signature::from_bytes(&sig))
        .is_ok()
}

/// An Ed25519 public key from 64 hex digits.
pub fn parse_public_key(hex_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// SHA-256 (hex) of a signed body.
pub fn content_hash(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

impl SignedRequest {
    pub fn sign(body: &RequestBody, key: &SigningKey) -> Self {
        let body = serde_json::to_string(body).expect("invariant: requests always serialize");
        let sig = key.sign(&signed_bytes(REQUEST_CONTEXT, &body));
        Self {
            sig: b64().encode(sig.to_bytes()),
            key: hex::encode(key.verifying_key().as_bytes()),
            body,
        }
    }

    /// The body, when the signature verifies with `key` (the host's).
    pub fn verify(&self, key: &VerifyingKey) -> Result<RequestBody, ApprovalError> {
        if !verify_sig(REQUEST_CONTEXT, &self.body, &self.sig, key) {
            return Err(ApprovalError::BadSignature(hex::encode(key.as_bytes())));
        }
        serde_json::from_str(&self.body).map_err(|e| ApprovalError::Malformed(e.to_string()))
    }

    /// The body, when the signature verifies with the key the message
    /// names (says only that the request is whole; who holds the key is
    /// for the caller to know, from the trusted-keys file).
    pub fn verify_self(&self) -> Result<RequestBody, ApprovalError> {
        let key = parse_public_key(&self.key)
            .ok_or_else(|| ApprovalError::Malformed(format!("bad key `{}`", self.key)))?;
        self.verify(&key)
    }

    pub fn hash(&self) -> String {
        content_hash(&self.body)
    }
}

impl SignedApproval {
    /// The approval of `request` (whose body is `req`) by `approver`.
    pub fn sign(
        request: &SignedRequest,
        req: &RequestBody,
        approver: &str,
        key: &SigningKey,
        now: DateTime<Utc>,
    ) -> Self {
        let body = ApprovalBody {
            request: req.id.clone(),
            host: req.host.clone(),
            request_hash: request.hash(),
            approver: approver.to_owned(),
            approved_at: now,
        };
        let body = serde_json::to_string(&body).expect("invariant: approvals always serialize");
        let sig = key.sign(&signed_bytes(APPROVAL_CONTEXT, &body));
        Self {
            sig: b64().encode(sig.to_bytes()),
            key: hex::encode(key.verifying_key().as_bytes()),
            body,
        }
    }
}

/// The approver keys a host trusts: `NAME:HEXKEY` each (config
/// `grants.approvers`). A key belongs to one name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Approvers(Vec<(String, VerifyingKey)>);

impl fmt::Debug for Approvers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, k)| (n, hex::encode(k.as_bytes()))))
            .finish()
    }
}

impl Approvers {
    pub fn parse(entries: &[String]) -> Result<Self, ApprovalError> {
        let mut out: Vec<(String, VerifyingKey)> = Vec::new();
        for e in entries {
            let bad = || ApprovalError::BadApprover(e.clone());
            let (name, key) = e.split_once(':').ok_or_else(bad)?;
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(bad());
            }
            let key = parse_public_key(key).ok_or_else(bad)?;
            if out.iter().any(|(n, k)| n == name || *k == key) {
                return Err(ApprovalError::DuplicateApprover(name.to_owned()));
            }
            out.push((name.to_owned(), key));
        }
        Ok(Self(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn by_key(&self, hex_key: &str) -> Option<&(String, VerifyingKey)> {
        let key = parse_public_key(hex_key)?;
        self.0.iter().find(|(_, k)| *k == key)
    }
}

/// What an approval is checked against on the host.
pub struct Context<'a> {
    pub host: &'a str,
    pub approvers: &'a Approvers,
    /// The two-person rule: the requester (or the grant's user) may not
    /// approve.
    pub two_person: bool,
    pub now: DateTime<Utc>,
}

/// The open request an approval names, looked up by id.
pub trait Open {
    fn open_request(&self, id: &str) -> Option<(&SignedRequest, &RequestBody)>;
}

/// The approval (and the request it approves) when `raw` is a valid
/// approval of an open request of this host, else why not. Checked in an
/// order that never trusts a field before its signature verified.
pub fn check<'o>(
    raw: &[u8],
    ctx: &Context<'_>,
    open: &'o impl Open,
) -> Result<(Approval, &'o RequestBody), Refusal> {
    let msg: SignedApproval =
        serde_json::from_slice(raw).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let (owner, key) = ctx
        .approvers
        .by_key(&msg.key)
        .ok_or_else(|| Refusal::UnknownKey(msg.key.clone()))?;
    if !verify_sig(APPROVAL_CONTEXT, &msg.body, &msg.sig, key) {
        return Err(Refusal::BadSignature(owner.clone()));
    }
    let body: ApprovalBody =
        serde_json::from_str(&msg.body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if body.approver != *owner {
        return Err(Refusal::NameMismatch {
            key_owner: owner.clone(),
            named: body.approver,
        });
    }
    if body.host != ctx.host {
        return Err(Refusal::WrongHost(body.host));
    }
    let (signed, req) = open
        .open_request(&body.request)
        .ok_or_else(|| Refusal::UnknownRequest(body.request.clone()))?;
    if signed.hash() != body.request_hash {
        return Err(Refusal::HashMismatch(body.request));
    }
    if req.expires <= ctx.now {
        return Err(Refusal::Expired {
            id: req.id.clone(),
            expires: req.expires,
        });
    }
    if ctx.two_person && is_own(owner, req) {
        return Err(Refusal::SelfApproval(owner.clone()));
    }
    Ok((
        Approval {
            request: req.id.clone(),
            approver: owner.clone(),
            key: hex::encode(key.as_bytes()),
            approved_at: body.approved_at,
        },
        req,
    ))
}

/// Whether approver `name` is the person who asked or who would debug.
fn is_own(name: &str, req: &RequestBody) -> bool {
    req.user == name || req.requester.login_user.as_deref() == Some(name)
}

#[cfg(test)]
mod tests;
