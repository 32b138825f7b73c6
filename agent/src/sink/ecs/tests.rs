//! Tests of the ECS format: a few record kinds mapped, each document
//! checked against a small schema of the ECS fields we promise
//! (docs/integrations.md), and the sealed record kept whole.

use serde_json::{Value, json};

use super::*;

/// The ECS fields every document has, with ECS's types and allowed values.
fn schema() -> Value {
    json!({
        "type": "object",
        "required": ["@timestamp", "ecs", "event", "host", "debugmon"],
        "properties": {
            "@timestamp": {"type": "string", "format": "date-time"},
            "ecs": {"type": "object", "required": ["version"],
                    "properties": {"version": {"const": ECS_VERSION}}},
            "event": {
                "type": "object",
                "required": ["kind", "category", "type", "action", "outcome", "module",
                             "dataset", "sequence", "id"],
                "properties": {
                    "kind": {"enum": ["alert", "event"]},
                    "category": {"type": "array", "items": {"enum": [
                        "configuration", "file", "host", "iam", "network", "process"]}},
                    "type": {"type": "array", "items": {"enum": [
                        "access", "allowed", "change", "creation", "deletion", "denied", "end",
                        "info", "start"]}},
                    "action": {"type": "string", "minLength": 1},
                    "outcome": {"enum": ["success", "failure", "unknown"]},
                    "severity": {"type": "integer", "minimum": 0, "maximum": 100},
                    "sequence": {"type": "integer"}
                }
            },
            "process": {"type": "object", "properties": {
                "pid": {"type": "integer"},
                "args": {"type": "array", "items": {"type": "string"}},
                "user": {"type": "object", "properties": {"id": {"type": "string"}}}
            }},
            "user": {"type": "object", "properties": {
                "id": {"type": "string"}, "name": {"type": "string"}
            }},
            "host": {"type": "object", "required": ["name"]},
            "debugmon": {"type": "object", "required": ["seq", "hash", "prev_hash", "kind"]}
        }
    })
}

fn record(kind: &str, extra: Value) -> Value {
    let mut r = json!({
        "schema": 1, "seq": 7, "prev_hash": "0".repeat(64), "hash": "a".repeat(64),
        "time": "2026-05-01T12:00:02.123456789Z", "monotonic_ns": 2000,
        "host": {"name": "db-7", "id": "4c4c", "boot_id": "5e6f"},
        "kind": kind,
    });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

fn actor() -> Value {
    json!({"pid": 4243, "tgid": 4242, "ppid": 4200, "uid": 1000, "user": "alice", "gid": 1000,
           "euid": 0, "egid": 0, "exe": "/usr/bin/gdb", "comm": "gdb",
           "argv": ["gdb", "-p", "9"], "cwd": "/home/alice", "container_id": null,
           "ssh": {"src_ip": "10.0.0.5", "src_port": 50122}})
}

fn check(doc: &Value) {
    let v = jsonschema::draft202012::new(&schema()).expect("the schema compiles");
    let errors: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{doc:#}");
}

#[test]
fn exec_maps_process_user_and_host() {
    let rec = record(
        "exec",
        json!({"actor": actor(), "detail": {"argv_truncated": false}}),
    );
    let doc = to_ecs(rec.clone()).unwrap();
    check(&doc);
    assert_eq!(doc["event"]["kind"], "event");
    assert_eq!(doc["event"]["category"], json!(["process"]));
    assert_eq!(doc["event"]["type"], json!(["start"]));
    assert_eq!(doc["event"]["action"], "exec");
    assert_eq!(doc["event"]["outcome"], "success");
    assert_eq!(doc["process"]["pid"], 4242);
    assert_eq!(doc["process"]["thread"]["id"], 4243);
    assert_eq!(doc["process"]["command_line"], "gdb -p 9");
    assert_eq!(doc["process"]["user"]["id"], "0", "effective uid");
    assert_eq!(doc["process"]["real_user"]["id"], "1000");
    assert!(
        doc["process"]["user"].get("name").is_none(),
        "alice is not uid 0"
    );
    assert_eq!(doc["user"]["name"], "alice");
    assert_eq!(doc["source"]["ip"], "10.0.0.5");
    assert_eq!(doc["host"]["boot"]["id"], "5e6f");
    assert!(doc.get("container").is_none(), "null fields are left out");
    assert_eq!(doc["debugmon"], rec, "the sealed record travels whole");
}

#[test]
fn a_denied_ptrace_is_a_failed_alert() {
    let rec = record(
        "ptrace",
        json!({"actor": actor(), "target": {"pid": 9, "comm": "postgres"},
               "detail": {"ptrace_request": "ATTACH", "lsm_hook": "ptrace_access_check"},
               "decision": {"action": "deny", "enforced": "lsm", "rule": "no-prod-attach",
                            "severity": "high", "reason": "no grant",
                            "tags": ["attack.t1055.008"]}}),
    );
    let doc = to_ecs(rec).unwrap();
    check(&doc);
    assert_eq!(doc["event"]["kind"], "alert");
    assert_eq!(doc["event"]["type"], json!(["access", "denied"]));
    assert_eq!(doc["event"]["action"], "ptrace-attach");
    assert_eq!(doc["event"]["outcome"], "failure");
    assert_eq!(doc["event"]["severity"], 73);
    assert_eq!(doc["rule"]["name"], "no-prod-attach");
    assert_eq!(doc["event"]["reason"], "no grant");
    assert_eq!(doc["tags"], json!(["attack.t1055.008"]));
}

#[test]
fn grants_agent_records_and_memory_reads() {
    let grant = record(
        "grant",
        json!({"detail": {"event": "created", "grant": {"id": "g1", "user": "bob"}}}),
    );
    let doc = to_ecs(grant).unwrap();
    check(&doc);
    assert_eq!(doc["event"]["category"], json!(["iam"]));
    assert_eq!(doc["event"]["type"], json!(["creation"]));
    assert_eq!(doc["user"]["target"]["name"], "bob");

    let agent = record("agent", json!({"detail": {"event": "heartbeat"}}));
    let doc = to_ecs(agent).unwrap();
    check(&doc);
    assert_eq!(doc["event"]["action"], "agent-heartbeat");
    assert_eq!(doc["event"]["outcome"], "unknown");

    let read = record(
        "mem_access",
        json!({"actor": actor(), "detail": {"via": "proc_mem", "access": "read", "result": "EACCES"}}),
    );
    let doc = to_ecs(read).unwrap();
    check(&doc);
    assert_eq!(doc["event"]["action"], "mem_access-proc_mem");
    assert_eq!(doc["event"]["outcome"], "failure");
}

#[test]
fn lines_round_trip_and_garbage_is_refused() {
    let rec = record("exec", json!({"actor": actor()}));
    let line = serde_json::to_vec(&rec).unwrap();
    let out = ecs_line(&line).unwrap();
    assert_eq!(out.last(), Some(&b'\n'));
    let doc: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["debugmon"], rec);
    assert!(ecs_line(b"not json").is_none());
    assert!(ecs_line(b"[1,2]").is_none());
    assert_eq!("ecs".parse::<RecordFormat>(), Ok(RecordFormat::Ecs));
    assert!(
        "cef"
            .parse::<RecordFormat>()
            .unwrap_err()
            .contains("json or ecs")
    );
}
