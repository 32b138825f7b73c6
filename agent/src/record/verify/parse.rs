//! Parsing one line for `verify`: the record's host, seq, links and
//! signature, its digest over the canonical encoding without `hash` and
//! `sig`, the key a start record announces, and what silence needs.

use base64::Engine;
use ed25519_dalek::Signature;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Rec, Sig, canonical, silence, silence::Mark};

/// One line, parsed: the host's key (machine-id, else name) and name, the
/// record, the public key of a start record, and the boot it came from.
pub(super) struct Parsed {
    pub(super) host: String,
    pub(super) name: String,
    pub(super) rec: Rec,
    pub(super) key: Option<String>,
    pub(super) boot_id: String,
}

pub(super) fn parse(line: &[u8]) -> Result<Parsed, String> {
    let mut m: Map<String, Value> =
        serde_json::from_slice(line).map_err(|e| format!("not a JSON object: {e}"))?;
    // An ECS document (sink `format = "ecs"`) carries the sealed record
    // whole under `debugmon`; the seal is checked on that.
    if m.contains_key("ecs")
        && let Some(Value::Object(inner)) = m.remove("debugmon")
    {
        m = inner;
    }
    let str_of =
        |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    let host = m.get("host").and_then(Value::as_object).ok_or("no host")?;
    let (name, id) = (
        str_of(host, "name").unwrap_or_default(),
        str_of(host, "id").unwrap_or_default(),
    );
    let host_key = if id.is_empty() { name.clone() } else { id };
    let boot_id = str_of(host, "boot_id").unwrap_or_default();
    let seq = m.get("seq").and_then(Value::as_u64).ok_or("no seq")?;
    let hash = str_of(&m, "hash").ok_or_else(|| format!("seq {seq}: no hash"))?;
    let prev_hash = str_of(&m, "prev_hash").ok_or_else(|| format!("seq {seq}: no prev_hash"))?;
    let sig = match m.get("sig") {
        None => Sig::Absent,
        Some(v) => v
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .and_then(|b| Signature::from_slice(&b).ok())
            .map_or(Sig::Malformed, Sig::Present),
    };
    let chain = m.get("chain").and_then(Value::as_object);
    let declared_prev = chain
        .and_then(|c| c.get("prev_seq"))
        .and_then(Value::as_u64);
    let skipped = chain
        .and_then(|c| c.get("skipped"))
        .and_then(Value::as_array)
        .and_then(|a| Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?)));
    let started_key = (m.get("kind").and_then(Value::as_str) == Some("agent"))
        .then(|| m.get("detail").and_then(Value::as_object))
        .flatten()
        .filter(|d| d.get("event").and_then(Value::as_str) == Some("started"))
        .and_then(|d| str_of(d, "public_key"));
    let mark = Mark {
        seq,
        time_ns: silence::time_ns(&m),
        monotonic_ns: m.get("monotonic_ns").and_then(Value::as_u64),
        boot: 0,
        agent: silence::agent_event(&m),
    };
    m.remove("hash");
    m.remove("sig");
    let digest: [u8; 32] = Sha256::digest(canonical::to_vec(&Value::Object(m))).into();
    Ok(Parsed {
        host: host_key,
        name,
        rec: Rec {
            seq,
            hash,
            prev_hash,
            digest,
            sig,
            declared_prev,
            skipped,
            mark,
        },
        key: started_key,
        boot_id,
    })
}
