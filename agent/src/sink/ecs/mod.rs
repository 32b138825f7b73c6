//! The `ecs` output format of the stdout and file sinks: each sealed record
//! as an Elastic Common Schema document (`ecs.version`, `@timestamp`,
//! `event.*`, `process.*`, `user.*`, `host.*`, ...) so a SIEM's ECS
//! pipelines take it as is. The sealed record travels whole under the
//! `debugmon` key, which is what `debugmon verify` checks, so the seal
//! stays provable. docs/integrations.md gives the mapping and why.

use serde_json::{Map, Value, json};

/// The ECS version the documents declare.
pub const ECS_VERSION: &str = "8.11.0";

/// How the local sinks write records (`[sinks] format`, `run --format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// The sealed record, one JSON object per line (docs/records.md).
    #[default]
    Json,
    /// An ECS document per line with the sealed record under `debugmon`.
    Ecs,
}

impl std::str::FromStr for RecordFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "ecs" => Ok(Self::Ecs),
            _ => Err(format!("unknown record format `{s}`: expected json or ecs")),
        }
    }
}

/// One sealed record line (with or without its newline) as an ECS line
/// ending in a newline; `None` when the line is not a JSON object, which a
/// sealed record always is.
pub fn ecs_line(line: &[u8]) -> Option<Vec<u8>> {
    let rec: Value = serde_json::from_slice(line).ok()?;
    let doc = to_ecs(rec)?;
    let mut out = serde_json::to_vec(&doc).ok()?;
    out.push(b'\n');
    Some(out)
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn id(v: &Value) -> Option<Value> {
    // ECS ids are keywords: uids and gids go as strings.
    v.as_u64().map(|n| Value::String(n.to_string()))
}

/// Inserts `value` at the dotted `path`, creating objects on the way;
/// `null`s are left out (ECS leaves unknown fields absent).
fn put(doc: &mut Map<String, Value>, path: &str, value: Option<Value>) {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return;
    };
    let mut parts = path.split('.').peekable();
    let mut map = doc;
    while let Some(k) = parts.next() {
        if parts.peek().is_none() {
            map.insert(k.to_owned(), value);
            return;
        }
        let next = map
            .entry(k.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        map = next
            .as_object_mut()
            .expect("invariant: just made an object");
    }
}

/// ECS `event.category` and `event.type` for a record kind.
fn category_and_type(rec: &Value, kind: &str) -> (&'static str, &'static str) {
    match kind {
        "exec" => ("process", "start"),
        "ptrace" | "mem_access" | "perf_attach" | "debug_signal" | "bpf" => ("process", "access"),
        "core_dump" => ("process", "end"),
        "debug_port" => ("network", "start"),
        "injection" => ("file", "change"),
        "grant" => match s(rec, &["detail", "event"]) {
            Some("created") => ("iam", "creation"),
            Some("revoked" | "expired") => ("iam", "deletion"),
            _ => ("iam", "access"),
        },
        "policy" => ("configuration", "change"),
        _ => ("host", "info"),
    }
}

/// `event.action`: the kind and, where the record says more, what exactly
/// (`ptrace-attach`, `mem_access-process_vm_readv`, `agent-heartbeat`).
fn action(rec: &Value, kind: &str) -> String {
    let sub = s(rec, &["detail", "ptrace_request"])
        .or_else(|| s(rec, &["detail", "via"]))
        .or_else(|| s(rec, &["detail", "event"]));
    match sub {
        Some(sub) => format!("{kind}-{}", sub.to_ascii_lowercase()),
        None => kind.to_owned(),
    }
}

/// `event.outcome`: whether the action itself went through. A refusal by
/// BPF-LSM or the kernel, or an errno in `detail.result`, is a failure;
/// `ok`, or an exec that produced a record, is a success; a kill fallback
/// acted after the call succeeded, so that stays success.
fn outcome(rec: &Value, kind: &str) -> &'static str {
    if s(rec, &["decision", "enforced"]) == Some("lsm") {
        return "failure";
    }
    match s(rec, &["detail", "result"]) {
        Some("ok") => "success",
        Some(_) => "failure",
        None if kind == "exec" => "success",
        None => "unknown",
    }
}

/// ECS's 0-100 `event.severity` for debugmon's names.
fn severity(name: &str) -> Option<u64> {
    Some(match name {
        "info" => 1,
        "low" => 21,
        "medium" => 47,
        "high" => 73,
        "critical" => 99,
        _ => return None,
    })
}

/// The ECS document for one sealed record; `None` when it is not an object.
pub fn to_ecs(rec: Value) -> Option<Value> {
    if !rec.is_object() {
        return None;
    }
    let mut d = Map::new();
    let kind = s(&rec, &["kind"]).unwrap_or("unknown").to_owned();
    let decision = rec.get("decision").cloned().unwrap_or(Value::Null);
    let verdict = s(&decision, &["action"]);
    let sev = s(&decision, &["severity"]);
    let alert = matches!(verdict, Some("alert" | "deny")) || sev.is_some();
    let (category, etype) = category_and_type(&rec, &kind);
    let mut types = vec![json!(etype)];
    match verdict {
        Some("deny") => types.push(json!("denied")),
        Some("allow") => types.push(json!("allowed")),
        _ => {}
    }

    put(&mut d, "@timestamp", rec.get("time").cloned());
    put(&mut d, "ecs.version", Some(json!(ECS_VERSION)));
    put(
        &mut d,
        "event.kind",
        Some(json!(if alert { "alert" } else { "event" })),
    );
    put(&mut d, "event.category", Some(json!([category])));
    put(&mut d, "event.type", Some(Value::Array(types)));
    put(&mut d, "event.action", Some(json!(action(&rec, &kind))));
    put(&mut d, "event.outcome", Some(json!(outcome(&rec, &kind))));
    put(&mut d, "event.module", Some(json!("debugmon")));
    put(
        &mut d,
        "event.dataset",
        Some(json!(format!("debugmon.{kind}"))),
    );
    put(&mut d, "event.sequence", rec.get("seq").cloned());
    put(&mut d, "event.id", rec.get("hash").cloned());
    put(
        &mut d,
        "event.severity",
        sev.and_then(severity).map(Value::from),
    );
    put(&mut d, "event.reason", decision.get("reason").cloned());
    put(&mut d, "rule.name", decision.get("rule").cloned());
    put(&mut d, "tags", decision.get("tags").cloned());

    put(&mut d, "host.name", rec.pointer("/host/name").cloned());
    put(
        &mut d,
        "host.id",
        rec.pointer("/host/id")
            .filter(|v| v != &&json!(""))
            .cloned(),
    );
    put(
        &mut d,
        "host.boot.id",
        rec.pointer("/host/boot_id").cloned(),
    );

    if let Some(a) = rec.get("actor").filter(|a| a.is_object()) {
        actor(&mut d, a);
    }
    // ECS has no field set for a second process acted upon; the target
    // stays in `debugmon.target` (docs/integrations.md).
    if kind == "grant" {
        put(
            &mut d,
            "user.target.name",
            rec.pointer("/detail/grant/user").cloned(),
        );
    }
    if kind == "injection" {
        put(&mut d, "file.path", Some(json!("/etc/ld.so.preload")));
    }
    if kind == "debug_port" {
        put(&mut d, "server.port", rec.pointer("/detail/port").cloned());
        put(
            &mut d,
            "server.address",
            rec.pointer("/detail/bind").cloned(),
        );
    }
    d.insert("debugmon".to_owned(), rec);
    Some(Value::Object(d))
}

/// `process.*`, `user.*`, `source.*` and `container.id` from the actor.
fn actor(d: &mut Map<String, Value>, a: &Value) {
    let g = |k: &str| a.get(k).cloned();
    put(d, "process.pid", g("tgid").or_else(|| g("pid")));
    put(d, "process.thread.id", g("pid"));
    put(d, "process.parent.pid", g("ppid"));
    put(d, "process.name", g("comm"));
    put(d, "process.executable", g("exe"));
    put(d, "process.working_directory", g("cwd"));
    if let Some(argv) = a.get("argv").and_then(Value::as_array) {
        let words: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
        put(d, "process.args", Some(json!(words)));
        put(d, "process.args_count", Some(json!(words.len())));
        put(d, "process.command_line", Some(json!(words.join(" "))));
    }
    put(d, "process.user.id", a.get("euid").and_then(id));
    put(d, "process.group.id", a.get("egid").and_then(id));
    put(d, "process.real_user.id", a.get("uid").and_then(id));
    put(d, "process.real_user.name", g("user"));
    put(d, "process.real_group.id", a.get("gid").and_then(id));
    put(d, "user.id", a.get("uid").and_then(id));
    put(d, "user.name", g("user"));
    put(d, "user.effective.id", a.get("euid").and_then(id));
    put(d, "user.group.id", a.get("gid").and_then(id));
    put(
        d,
        "process.user.name",
        g("user").filter(|_| a.get("uid") == a.get("euid")),
    );
    put(d, "source.ip", a.pointer("/ssh/src_ip").cloned());
    put(d, "source.port", a.pointer("/ssh/src_port").cloned());
    put(d, "container.id", g("container_id"));
}

#[cfg(test)]
mod tests;
