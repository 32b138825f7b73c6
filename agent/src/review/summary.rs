//! The views of `debugmon review`, each a [`Table`]: the records
//! themselves (optionally grouped by session), and the summaries an
//! auditor asks for: who debugged what, the denials and what was asked
//! after them, the grants with the records made under each, and each
//! host's chain and heartbeat. Every row that rests on records says
//! whether they all verified.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Entry, Reviewed, Status, fields, session, table::Table};
use crate::record::verify::Problem;

/// Which summary `--summary` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Summary {
    /// Per person, host and target: how many records, of which kinds,
    /// denied how often, first and last
    Who,
    /// Every denial, and the grants the same person asked for on that host
    /// afterwards
    Denials,
    /// Every grant: who asked, for what, and the records made under it
    Grants,
    /// Every host: its chain's verdict, last heartbeat, silences
    Hosts,
}

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn opt(v: Option<impl Into<String>>) -> Value {
    v.map_or(Value::Null, |v| Value::String(v.into()))
}

/// `ok` when every status is, else the count of the others.
fn verdict<'a>(statuses: impl Iterator<Item = &'a Status>) -> Value {
    let bad = statuses.filter(|s| !s.ok()).count();
    if bad == 0 {
        s("ok")
    } else {
        s(format!("{bad} NOT VERIFIED"))
    }
}

/// The records, one a row; with `sessions`, ordered session by session
/// (each from its first record), records outside a session last.
pub fn records(entries: &[&Entry], sessions: bool) -> Table {
    let mut columns = vec![
        "time", "host", "seq", "kind", "user", "actor", "target", "what", "decision", "rule",
        "verified",
    ];
    let labels = if sessions {
        columns.push("session");
        session::assign(entries)
    } else {
        vec![None; entries.len()]
    };
    let mut order: Vec<usize> = (0..entries.len()).collect();
    if sessions {
        let mut first: BTreeMap<&str, i64> = BTreeMap::new();
        for (e, l) in entries.iter().zip(&labels) {
            if let Some(l) = l {
                let t = fields::time_ns(&e.record).unwrap_or(i64::MAX);
                let f = first.entry(l).or_insert(t);
                *f = (*f).min(t);
            }
        }
        order.sort_by_key(|&i| {
            let l = labels[i].as_deref();
            (
                l.is_none(),
                l.and_then(|l| first.get(l).copied()),
                l,
                fields::time_ns(&entries[i].record),
                entries[i].line,
            )
        });
    }
    let rows = order
        .into_iter()
        .map(|i| {
            let (e, r) = (entries[i], &entries[i].record);
            let mut row = vec![
                s(fields::time(r)),
                s(fields::host(r)),
                fields::seq(r).map_or(Value::Null, Value::from),
                s(fields::kind(r)),
                opt(fields::who(r)),
                s(fields::actor(r)),
                opt(fields::target(r)),
                s(fields::what(r)),
                opt(fields::action(r)),
                opt(fields::rule(r)),
                s(e.status.text()),
            ];
            if sessions {
                row.push(opt(labels[i].clone()));
            }
            row
        })
        .collect();
    Table {
        columns,
        rows,
        group: sessions.then_some(11),
    }
}

/// One JSON object per record: the sealed record untouched (so it can be
/// verified again), beside what review found.
pub fn records_json(entries: &[&Entry], sessions: bool) -> String {
    let labels = if sessions {
        session::assign(entries)
    } else {
        vec![None; entries.len()]
    };
    let mut out = String::new();
    for (e, l) in entries.iter().zip(labels) {
        let mut o = json!({"line": e.line, "verified": e.status.text(), "record": e.record});
        if sessions {
            o["session"] = opt(l);
        }
        out.push_str(&o.to_string());
        out.push('\n');
    }
    out
}

/// Per (person, host, target), for records that debug something: a
/// target, or a known debugger run.
pub fn who(entries: &[&Entry]) -> Table {
    type Key = (String, String, String);
    let mut groups: BTreeMap<Key, Vec<&Entry>> = BTreeMap::new();
    for e in entries {
        let r = &e.record;
        if !r["actor"].is_object() || matches!(fields::kind(r), "inventory" | "agent" | "lost") {
            continue;
        }
        let target = match (fields::target(r), r["detail"]["debugger"].as_str()) {
            (Some(t), _) => t,
            (None, Some(d)) => format!("({d} run)"),
            (None, None) => continue,
        };
        let key = (
            fields::who(r).unwrap_or_else(|| "-".into()),
            fields::host(r).to_owned(),
            target,
        );
        groups.entry(key).or_default().push(e);
    }
    let rows = groups
        .into_iter()
        .map(|((user, host, target), es)| {
            let mut kinds: Vec<&str> = es.iter().map(|e| fields::kind(&e.record)).collect();
            kinds.sort_unstable();
            kinds.dedup();
            let times: Vec<&str> = es.iter().map(|e| fields::time(&e.record)).collect();
            let denied = es
                .iter()
                .filter(|e| fields::action(&e.record) == Some("deny"))
                .count();
            vec![
                s(user),
                s(host),
                s(target),
                Value::from(es.len()),
                json!(kinds),
                Value::from(denied),
                opt(times.iter().min().copied()),
                opt(times.iter().max().copied()),
                verdict(es.iter().map(|e| &e.status)),
            ]
        })
        .collect();
    Table {
        columns: vec![
            "user", "host", "target", "records", "kinds", "denied", "first", "last", "verified",
        ],
        rows,
        group: None,
    }
}

/// Grant records that created a grant: (host, time ns, person, id).
fn grants_created<'a>(entries: &[&'a Entry]) -> Vec<(&'a str, i64, Option<String>, &'a str)> {
    entries
        .iter()
        .filter(|e| e.record["kind"] == "grant" && e.record["detail"]["event"] == "created")
        .filter_map(|e| {
            let r = &e.record;
            Some((
                fields::host(r),
                fields::time_ns(r)?,
                fields::who(r),
                r["detail"]["grant"]["id"].as_str()?,
            ))
        })
        .collect()
}

/// Every denial; `then_asked`: grants the same person created on the same
/// host at or after it (from `all`, whatever the filters).
pub fn denials(entries: &[&Entry], all: &[&Entry]) -> Table {
    let created = grants_created(all);
    let rows = entries
        .iter()
        .filter(|e| fields::action(&e.record) == Some("deny"))
        .map(|e| {
            let r = &e.record;
            let who = fields::who(r);
            let t = fields::time_ns(r);
            let asked: Vec<&str> = created
                .iter()
                .filter(|(h, gt, p, _)| {
                    *h == fields::host(r) && *p == who && t.is_some_and(|t| *gt >= t)
                })
                .map(|(.., id)| *id)
                .collect();
            vec![
                s(fields::time(r)),
                s(fields::host(r)),
                opt(who),
                s(fields::actor(r)),
                opt(fields::target(r)),
                s(fields::kind(r)),
                s(fields::what(r)),
                opt(fields::rule(r)),
                r["decision"]["enforced"].clone(),
                json!(asked),
                s(e.status.text()),
            ]
        })
        .collect();
    Table {
        columns: vec![
            "time",
            "host",
            "user",
            "actor",
            "target",
            "kind",
            "what",
            "rule",
            "enforced",
            "then_asked",
            "verified",
        ],
        rows,
        group: None,
    }
}

/// Every grant seen in `entries` (by host and id): its terms from its
/// records, its events, and the records made under it (from `all`).
pub fn grants(entries: &[&Entry], all: &[&Entry]) -> Table {
    let mut by_grant: BTreeMap<(String, String), Vec<&Entry>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.record["kind"] == "grant") {
        if let Some(id) = e.record["detail"]["grant"]["id"].as_str() {
            let key = (fields::host(&e.record).to_owned(), id.to_owned());
            by_grant.entry(key).or_default().push(e);
        }
    }
    let rows = by_grant
        .into_iter()
        .map(|((host, id), es)| {
            let g = &es[0].record["detail"]["grant"];
            let events: Vec<&str> = es
                .iter()
                .filter_map(|e| e.record["detail"]["event"].as_str())
                .collect();
            let used: Vec<&&Entry> = all
                .iter()
                .filter(|e| {
                    fields::grant_id(&e.record) == Some(id.as_str())
                        && fields::host(&e.record) == host
                })
                .collect();
            let seqs: Vec<Value> = used
                .iter()
                .filter_map(|e| fields::seq(&e.record).map(Value::from))
                .collect();
            let mut used_kinds: Vec<&str> = used.iter().map(|e| fields::kind(&e.record)).collect();
            used_kinds.sort_unstable();
            used_kinds.dedup();
            vec![
                s(host),
                s(id),
                g["user"].clone(),
                g["target"].clone(),
                g["reason"].clone(),
                opt(fields::who(&es[0].record)),
                g["created"].clone(),
                g["expires"].clone(),
                json!(events),
                Value::from(used.len()),
                json!(used_kinds),
                Value::Array(seqs),
                verdict(es.iter().chain(used.iter().copied()).map(|e| &e.status)),
            ]
        })
        .collect();
    Table {
        columns: vec![
            "host",
            "grant",
            "user",
            "target",
            "reason",
            "requested_by",
            "created",
            "expires",
            "events",
            "records",
            "kinds",
            "seqs",
            "verified",
        ],
        rows,
        group: None,
    }
}

/// Every host in the report (only `hosts`, by name or id, when given):
/// its chain, last heartbeat and silences.
pub fn hosts(reviewed: &Reviewed, only: &[String]) -> Table {
    let rows = reviewed
        .report
        .hosts
        .iter()
        .filter(|(id, h)| only.is_empty() || only.iter().any(|o| o == *id || *o == h.name))
        .map(|(id, h)| {
            let mine = || {
                reviewed
                    .entries
                    .iter()
                    .filter(move |e| fields::host_key(&e.record).as_deref() == Some(id.as_str()))
            };
            let times: Vec<&str> = mine().map(|e| fields::time(&e.record)).collect();
            let (silent, other): (Vec<&Problem>, Vec<&Problem>) = h
                .problems
                .iter()
                .partition(|p| matches!(p, Problem::Silent { .. } | Problem::EndsOpen { .. }));
            let text = |ps: Vec<&Problem>| {
                Value::Array(ps.into_iter().map(|p| s(p.to_string())).collect())
            };
            vec![
                s(h.name.clone()),
                s(id.clone()),
                Value::from(h.records),
                opt(times.iter().min().copied()),
                opt(times.iter().max().copied()),
                opt(h.last_heartbeat.as_ref().and_then(|b| b.time.clone())),
                s(if other.is_empty() { "ok" } else { "FAILED" }),
                text(silent),
                text(other),
            ]
        })
        .collect();
    Table {
        columns: vec![
            "host",
            "id",
            "records",
            "first",
            "last",
            "last_heartbeat",
            "chain",
            "silent",
            "problems",
        ],
        rows,
        group: None,
    }
}
