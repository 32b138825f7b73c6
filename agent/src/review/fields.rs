//! What a record says, read one way for filters, summaries and tables:
//! its host, time, who acted (the login user before the effective one,
//! since sudo changes the one and not the other), what was done and to
//! whom. Fields a record lacks read as `None` or `-`, never a panic:
//! review shows malformed and foreign lines too.

use serde_json::Value;

/// The key `verify` groups a record's chain by: machine-id, else name
/// (empty when the host object has neither); `None` without a host object.
pub fn host_key(r: &Value) -> Option<String> {
    let h = r["host"].as_object()?;
    let name = h.get("name").and_then(Value::as_str).unwrap_or_default();
    let id = h.get("id").and_then(Value::as_str).unwrap_or_default();
    Some(if id.is_empty() { name } else { id }.to_owned())
}

pub fn host(r: &Value) -> &str {
    r["host"]["name"].as_str().unwrap_or("-")
}

pub fn seq(r: &Value) -> Option<u64> {
    r["seq"].as_u64()
}

pub fn kind(r: &Value) -> &str {
    r["kind"].as_str().unwrap_or("-")
}

pub fn time(r: &Value) -> &str {
    r["time"].as_str().unwrap_or("-")
}

/// `time` as Unix ns; `None` when absent or not RFC 3339.
pub fn time_ns(r: &Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(r["time"].as_str()?)
        .ok()?
        .timestamp_nanos_opt()
}

/// A string member, or a number as text (`uid: 1000`).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The person behind the record: the login user (what sudo and su keep),
/// else the user, else `uid=N`; for a grant record, who asked for it.
pub fn who(r: &Value) -> Option<String> {
    let a = &r["actor"];
    if a.is_object() {
        return text(&a["login_user"])
            .or_else(|| text(&a["user"]))
            .or_else(|| text(&a["uid"]).map(|u| format!("uid={u}")));
    }
    let g = &r["detail"]["grant"];
    let by = &g["requested_by"];
    text(&by["login_user"])
        .or_else(|| text(&by["uid"]).map(|u| format!("uid={u}")))
        .or_else(|| text(&g["user"]))
}

/// Every name a `--user` filter may match: the actor's user and login
/// user and their uids, a grant's user and requester.
pub fn users(r: &Value) -> Vec<String> {
    let a = &r["actor"];
    let g = &r["detail"]["grant"];
    [
        &a["user"],
        &a["login_user"],
        &a["uid"],
        &a["auid"],
        &g["user"],
        &g["requested_by"]["login_user"],
        &g["requested_by"]["uid"],
    ]
    .into_iter()
    .filter_map(text)
    .collect()
}

/// The actor as `comm[pid]`, or `-`.
pub fn actor(r: &Value) -> String {
    let a = &r["actor"];
    match (a["comm"].as_str(), text(&a["pid"])) {
        (Some(c), Some(p)) => format!("{c}[{p}]"),
        (Some(c), None) => c.to_owned(),
        _ => "-".to_owned(),
    }
}

/// The target as its unit (what a service owner knows it by), else its
/// program; for a grant record, the grant's target.
pub fn target(r: &Value) -> Option<String> {
    let t = &r["target"];
    if t.is_object() {
        return text(&t["unit"])
            .or_else(|| text(&t["comm"]))
            .or_else(|| text(&t["pid"]).map(|p| format!("pid {p}")));
    }
    text(&r["detail"]["grant"]["target"])
}

/// Every name a `--target` filter may match: unit, program name and path,
/// pid, container, a grant's target.
pub fn targets(r: &Value) -> Vec<String> {
    let t = &r["target"];
    [
        &t["unit"],
        &t["comm"],
        &t["exe"],
        &t["pid"],
        &t["container_id"],
        &r["detail"]["grant"]["target"],
    ]
    .into_iter()
    .filter_map(text)
    .collect()
}

/// What was asked, in a few words: the kind-specific detail that says it
/// (`ATTACH`, `process_vm_readv read`, `heartbeat`, the debugger run).
pub fn what(r: &Value) -> String {
    let d = &r["detail"];
    let mut parts: Vec<String> = [
        "ptrace_request",
        "via",
        "access",
        "event",
        "debugger",
        "interface",
        "finding",
        "prog_type",
    ]
    .iter()
    .filter_map(|k| text(&d[*k]))
    .collect();
    if let Some(id) = text(&d["grant"]["id"]) {
        parts.push(id);
    }
    if parts.is_empty() && kind(r) == "exec" {
        parts.extend(r["actor"]["argv"].as_array().map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        }));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

/// `decision.action`: `allow`, `alert`, `deny`; `None` without a decision.
pub fn action(r: &Value) -> Option<&str> {
    r["decision"]["action"].as_str()
}

pub fn rule(r: &Value) -> Option<&str> {
    r["decision"]["rule"].as_str()
}

pub fn grant_id(r: &Value) -> Option<&str> {
    r["decision"]["grant_id"].as_str()
}

/// The deciding rule's tags (MITRE ATT&CK ids).
pub fn tags(r: &Value) -> Vec<&str> {
    r["decision"]["tags"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Where the login came from: the SSH client address.
pub fn origin(r: &Value) -> Option<&str> {
    r["actor"]["ssh"]["src_ip"].as_str()
}

/// `-` for what is absent, for tables.
pub fn or_dash(s: Option<impl Into<String>>) -> String {
    s.map_or_else(|| "-".to_owned(), Into::into)
}
