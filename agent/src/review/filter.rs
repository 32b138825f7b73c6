//! The filters of `debugmon review`: time range, host, user, rule,
//! decision, kind, target, MITRE tag and verification. Each flag may be
//! given several times (any of its values matches); different flags must
//! all match. A line that is not a record at all has nothing to match on
//! and is always shown: a line broken to get it out of a review is what
//! the reviewer must see.

use serde_json::Value;

use super::{Entry, Status, fields};
use crate::duration::parse_instant;

/// `--since`/`--until` (or the page's `since=`/`until=`): RFC 3339 or a
/// duration back from `now`, as Unix ns; the message names the flag.
pub fn instant_ns(flag: &str, s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<i64, String> {
    parse_instant(s, now)
        .map_err(|e| format!("--{flag} {s:?}: {e}"))?
        .timestamp_nanos_opt()
        .ok_or_else(|| format!("--{flag} {s:?}: out of range"))
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Unix ns, inclusive; a record without a readable time never matches.
    pub since_ns: Option<i64>,
    /// Unix ns, exclusive.
    pub until_ns: Option<i64>,
    /// `host.name` or `host.id`.
    pub hosts: Vec<String>,
    /// The actor's user or login user (name or uid), a grant's user or
    /// requester.
    pub users: Vec<String>,
    /// `decision.rule`.
    pub rules: Vec<String>,
    /// `allow`, `alert`, `deny`, or `none` for records without a decision.
    pub decisions: Vec<String>,
    pub kinds: Vec<String>,
    /// The target's unit, program name or path, pid, container, or a
    /// grant's target.
    pub targets: Vec<String>,
    /// MITRE ATT&CK ids, with or without `attack.`, any case; a technique
    /// matches its sub-techniques (`t1055` matches `attack.t1055.008`).
    pub tags: Vec<String>,
    /// Only entries that did not verify.
    pub failed_only: bool,
}

/// `attack.T1055` and `t1055` alike.
fn norm_tag(t: &str) -> String {
    let t = t.trim().to_ascii_lowercase();
    t.strip_prefix("attack.").map_or(t.clone(), str::to_owned)
}

/// No values: no condition; else any value may match.
fn any_of(wanted: &[String], pred: impl Fn(&str) -> bool) -> bool {
    wanted.is_empty() || wanted.iter().any(|w| pred(w))
}

impl Filter {
    pub fn matches(&self, e: &Entry) -> bool {
        if self.failed_only && e.status.ok() {
            return false;
        }
        if matches!(e.status, Status::Malformed(_)) {
            return true;
        }
        self.matches_record(&e.record)
    }

    fn matches_record(&self, r: &Value) -> bool {
        if self.since_ns.is_some() || self.until_ns.is_some() {
            let Some(t) = fields::time_ns(r) else {
                return false;
            };
            if self.since_ns.is_some_and(|s| t < s) || self.until_ns.is_some_and(|u| t >= u) {
                return false;
            }
        }
        let users = fields::users(r);
        let targets = fields::targets(r);
        let tags: Vec<String> = fields::tags(r).into_iter().map(norm_tag).collect();
        any_of(&self.hosts, |h| {
            r["host"]["name"] == h || r["host"]["id"] == h
        }) && any_of(&self.users, |u| users.iter().any(|x| x == u))
            && any_of(&self.rules, |w| fields::rule(r) == Some(w))
            && any_of(&self.decisions, |d| {
                fields::action(r).unwrap_or("none") == d
            })
            && any_of(&self.kinds, |k| fields::kind(r) == k)
            && any_of(&self.targets, |t| targets.iter().any(|x| x == t))
            && any_of(&self.tags, |t| {
                let t = norm_tag(t);
                tags.iter()
                    .any(|x| *x == t || x.strip_prefix(&t).is_some_and(|r| r.starts_with('.')))
            })
    }
}
