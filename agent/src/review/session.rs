//! Which records belong to one login session. On one host that is the
//! kernel's audit session (`actor.session_id`), which sudo and su keep, so
//! a `sudo gdb` is in the session of the SSH login that ran it. Across
//! hosts there is no shared id: sessions on different hosts are joined
//! when the same person (login user) came from the same address
//! (`actor.ssh.src_ip`) and the sessions overlap in time, which is what an
//! engineer working on two hosts from one laptop at once looks like. A
//! session without an SSH origin (a console) stays on its host.

use std::collections::BTreeMap;

use super::{Entry, fields};

/// One host's session: (host key, session id).
type Local = (String, u64);

#[derive(Debug)]
struct Span {
    login: String,
    origin: Option<String>,
    host: String,
    id: u64,
    first: i64,
    last: i64,
}

/// The session label of each entry (`None`: no login session, e.g. agent
/// and inventory records, or a process outside any session), in order.
/// A label reads `LOGIN from ORIGIN: HOST/ID+HOST/ID`, the hosts in the
/// order the session reached them.
pub fn assign(entries: &[&Entry]) -> Vec<Option<String>> {
    let mut spans: BTreeMap<Local, Span> = BTreeMap::new();
    let mut local_of = Vec::with_capacity(entries.len());
    for e in entries {
        let r = &e.record;
        let a = &r["actor"];
        let local = a["session_id"]
            .as_u64()
            .zip(fields::host_key(r))
            .map(|(id, h)| (h, id));
        if let Some(key) = &local {
            let t = fields::time_ns(r).unwrap_or(0);
            let s = spans.entry(key.clone()).or_insert_with(|| Span {
                login: fields::who(r).unwrap_or_else(|| "-".into()),
                origin: fields::origin(r).map(str::to_owned),
                host: fields::host(r).to_owned(),
                id: key.1,
                first: t,
                last: t,
            });
            s.first = s.first.min(t);
            s.last = s.last.max(t);
        }
        local_of.push(local);
    }
    // Join overlapping spans of one login from one origin: sorted by
    // start, a span joins the open group whose end it starts before.
    let mut order: Vec<(&Local, &Span)> = spans.iter().collect();
    order.sort_by_key(|(k, s)| (s.first, (*k).clone()));
    let mut groups: Vec<(Vec<&Span>, i64)> = Vec::new();
    let mut group_of: BTreeMap<&Local, usize> = BTreeMap::new();
    for (k, s) in order {
        let joined = s.origin.as_ref().and_then(|o| {
            groups.iter().position(|(members, end)| {
                let m = members[0];
                m.origin.as_ref() == Some(o) && m.login == s.login && s.first <= *end
            })
        });
        let g = match joined {
            Some(g) => {
                groups[g].0.push(s);
                groups[g].1 = groups[g].1.max(s.last);
                g
            }
            None => {
                groups.push((vec![s], s.last));
                groups.len() - 1
            }
        };
        group_of.insert(k, g);
    }
    let labels: Vec<String> = groups
        .iter()
        .map(|(members, _)| {
            let hosts: Vec<String> = members
                .iter()
                .map(|m| format!("{}/{}", m.host, m.id))
                .collect();
            match &members[0].origin {
                Some(o) => format!("{} from {o}: {}", members[0].login, hosts.join("+")),
                None => format!("{} local: {}", members[0].login, hosts.join("+")),
            }
        })
        .collect();
    local_of
        .iter()
        .map(|l| {
            l.as_ref()
                .and_then(|l| group_of.get(l))
                .map(|&g| labels[g].clone())
        })
        .collect()
}
