//! Which records are alerts: those whose decision is an alert or a deny.
//! They are signed one by one, fsync'd at once, and also published to the
//! alert subjects, under the severity given here.

use serde_json::{Map, Value};

/// Severity of an alert or denial, `None` for other records.
pub fn alert_severity(record: &Map<String, Value>) -> Option<String> {
    let decision = record.get("decision")?.as_object()?;
    severity_of(
        decision.get("severity").and_then(Value::as_str),
        decision.get("action").and_then(Value::as_str),
    )
}

/// Alert severity from a decision's `severity` and `action`.
pub fn severity_of(severity: Option<&str>, action: Option<&str>) -> Option<String> {
    match (severity, action) {
        (Some(s), _) => Some(s.to_owned()),
        (None, Some("alert" | "deny")) => Some("unspecified".to_owned()),
        _ => None,
    }
}
