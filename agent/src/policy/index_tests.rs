//! Tests of the key index and the pattern index: they only make
//! evaluation cheaper, so every decision must equal the one a scan of every
//! rule gives, and no rule that fires or is exempted may be left out of the
//! candidates. The rules reach the engine through each path (unkeyed, uid,
//! every key source, each glob shape and its globset fallback) and trigger
//! on several classes, so a rule filed under the wrong class, or a glob
//! shape matched differently from globset, shows up as a mismatch.

use chrono::{TimeZone, Utc};

use super::{
    engine::{Facts, Outcome, with_scratch},
    grant::{AccessMode, Grant, GrantTarget},
    *,
};

const RULES: &str = r#"
debuggers:
  gdb: { exe: [gdb], comm: [gdb] }
roles:
  ops: { users: [carol], groups: [wheel] }
rules:
  - { name: unkeyed-tty, on: [ptrace_attach, exec], actor: { tty: true }, action: alert, severity: low }
  - { name: by-uid, on: [mem_read, ptrace_access], actor: { uids: [0, 1001] }, action: alert, severity: low }
  - { name: by-target-uid, on: [ptrace_attach, pidfd_getfd], target: { uids: [105] }, action: alert, severity: low }
  - name: comm-then-exe
    on: [ptrace_attach, mem_write]
    target: { comm: [postgres, app], exe: ["/usr/lib/*/bin/postgres", "/srv/app/**"] }
    action: alert
    severity: medium
  - name: target-exe
    on: [mem_read, mem_write]
    target: { exe: ["/srv/app/**", "/srv//**", "/opt/x/*", "/opt/x/y*", "/**", "/srv/app/bin/**"] }
    action: alert
    severity: low
  - name: actor-exe
    on: [exec, ptrace_attach, mem_read]
    actor:
      exe: ["/usr/bin/*", "/usr/lib/systemd/systemd*", "gdb*", "/a/*/b", "/opt/[ab]*",
            "*.so", "/usr/local/bin/tool", "/*", "rel/*", "/u?r/bin/gdb", "/usr/bin/g*b"]
    action: alert
    severity: low
  - { name: actor-comm, on: [exec, mem_read], actor: { comm: ["g?b", x] }, action: alert, severity: low }
  - { name: actor-unit, on: [exec], actor: { unit: ["session-*.scope"] }, action: alert, severity: low }
  - { name: groups, on: [ptrace_attach, debugger_exec], actor: { groups: [wheel] }, action: alert, severity: low }
  - { name: debugger, on: [exec, ptrace_attach], actor: { debugger: [gdb] }, action: alert, severity: low }
  - { name: request, on: [ptrace_access], detail: { ptrace_request: ["PTRACE_POKE*"] }, action: alert, severity: low }
  - { name: via, on: [mem_read, mem_write, pidfd_getfd], detail: { via: [proc_mem] }, action: alert, severity: low }
  - { name: prog, on: [bpf_load], detail: { prog_type: [kprobe] }, action: alert, severity: low }
  - { name: login-user, on: [exec, perf_attach], actor: { login_users: [bob] }, action: alert, severity: low }
  - { name: target-user, on: [ptrace_attach, mem_read], target: { users: [postgres] }, action: alert, severity: low }
  - { name: target-unit, on: [ptrace_attach], target: { unit: ["*.service"] }, action: alert, severity: low }
  - name: unless-exe
    on: [ptrace_attach, mem_read, perf_attach]
    unless: { exe: ["/usr/bin/*", "/srv/**", "gdb"], comm: [x], users: [carol], grant: true }
    action: alert
    severity: medium
  - { name: role, on: [exec, ptrace_attach], actor: { roles: [ops] }, action: alert, severity: high }
  - name: deny-db
    on: [ptrace_attach, mem_read]
    target: { comm: [postgres] }
    unless: { role: [ops], grant: true }
    action: deny
    severity: high
"#;

struct OneGrant(Grant);

impl GrantLookup for OneGrant {
    fn active_for(&self, user: &str, t: Option<&event::Target>) -> Option<&Grant> {
        (self.0.user == user && self.0.target.covers(t)).then_some(&self.0)
    }
}

fn bobs_grant() -> OneGrant {
    let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 9, 0, 0).unwrap();
    OneGrant(Grant {
        id: "g-1".into(),
        user: "bob".into(),
        target: "any".parse::<GrantTarget>().unwrap(),
        mode: AccessMode::Full,
        reason: "INC-1".into(),
        created: t0,
        expires: t0 + chrono::Duration::hours(2),
        start_tick: None,
        requested_by: None,
        approved: None,
    })
}

/// Events of every class, crossed with actor and target values that hit
/// and miss each pattern shape (and the edges of each: an empty name after
/// the directory, the directory itself, a doubled `/`).
fn events() -> Vec<PolicyEvent> {
    let details = [
        r#""kind":"exec""#,
        r#""kind":"exec","detail":{"debugger":"gdb"}"#,
        r#""kind":"ptrace","detail":{"ptrace_request":"PTRACE_ATTACH"}"#,
        r#""kind":"ptrace","detail":{"ptrace_request":"PTRACE_POKEDATA"}"#,
        r#""kind":"ptrace","detail":{"ptrace_request":"PTRACE_TRACEME"}"#,
        r#""kind":"mem_access","detail":{"via":"process_vm_readv","access":"read"}"#,
        r#""kind":"mem_access","detail":{"via":"proc_mem","access":"write"}"#,
        r#""kind":"mem_access","detail":{"via":"pidfd_getfd"}"#,
        r#""kind":"perf_attach""#,
        r#""kind":"bpf","detail":{"prog_type":"kprobe"}"#,
    ];
    let actor_exes = [
        "/usr/bin/gdb",
        "/usr/bin/",
        "/usr/bin/x/gdb",
        "/usr/lib/systemd/systemd-journald",
        "/usr/lib/systemd/x",
        "/a/q/b",
        "/a/q/r/b",
        "/opt/bz",
        "/lib/libc.so",
        "/srv/app/bin/x",
        "/usr/local/bin/tool",
        "/uxr/bin/gdb",
        "rel/x",
        "gdb",
        "",
    ];
    let targets = [
        r#","target":{"pid":77,"comm":"postgres","exe":"/usr/lib/pg/bin/postgres","uid":105,"user":"postgres","unit":"postgresql.service"}"#,
        r#","target":{"pid":78,"comm":"app","exe":"/srv/app/x","uid":1001}"#,
        r#","target":{"pid":78,"comm":"app","exe":"/srv/app"}"#,
        r#","target":{"pid":79,"comm":"x","exe":"/srv/app/bin/y"}"#,
        r#","target":{"pid":79,"comm":"x","exe":"/srv//y"}"#,
        r#","target":{"pid":79,"comm":"x","exe":"/srv/y"}"#,
        r#","target":{"pid":79,"comm":"x","exe":"/opt/x/y"}"#,
        r#","target":{"pid":79,"comm":"x","exe":"/opt/x/y/z"}"#,
        r#","target":{"pid":79,"comm":"x","exe":"/opt/x/"}"#,
        "",
    ];
    let people = [
        r#""uid":1001,"user":"bob","login_user":"bob","groups":["dev"],"tty":"pts/0""#,
        r#""uid":0,"user":"root","login_user":"carol","groups":["wheel"],"unit":"session-2.scope""#,
    ];
    let mut out = Vec::new();
    for d in details {
        for (i, exe) in actor_exes.iter().enumerate() {
            let comm = exe.rsplit('/').next().unwrap_or_default();
            for t in targets {
                let who = people[i % 2];
                let json = format!(r#"{{{d},"actor":{{{who},"exe":"{exe}","comm":"{comm}"}}{t}}}"#);
                out.push(PolicyEvent::from_json(&json).unwrap());
            }
        }
    }
    out
}

/// `evaluate` without the key index: every rule is a candidate, in load
/// order (the choice among candidates is the engine's own).
fn decide_by_scan<'a>(set: &'a PolicySet, e: &PolicyEvent, cx: &EvalContext<'a>) -> Ruling<'a> {
    if e.class().is_none() {
        return Ruling::default_allow();
    }
    with_scratch(|s| {
        let mut facts = Facts::new(set, e, s);
        let every = 0..u32::try_from(set.rules.len()).unwrap();
        set.decide_among(every, &mut facts, cx)
    })
}

/// The rules that fire or are exempted for `e` (any of them can decide),
/// and the candidates the key index picks.
fn reachable_and_candidates(
    set: &PolicySet,
    e: &PolicyEvent,
    cx: &EvalContext<'_>,
) -> (Vec<u32>, Vec<u32>) {
    let class = e.class().expect("every test event has a class");
    with_scratch(|s| {
        let mut cand = Vec::new();
        let mut facts = Facts::new(set, e, s);
        set.candidates(class, &mut facts, &mut cand);
        let reachable = (0..set.rules.len())
            .filter(|&ri| {
                matches!(
                    set.outcome(&set.rules[ri], &mut facts, cx),
                    Outcome::Fires(_) | Outcome::Exempt(_)
                )
            })
            .map(|ri| u32::try_from(ri).unwrap())
            .collect();
        (reachable, cand)
    })
}

#[test]
fn index_agrees_with_a_scan_of_every_rule() {
    let set = PolicySet::from_texts(&[("r.yaml", RULES)]).unwrap_or_else(|d| panic!("{}", d[0]));
    let grant = bobs_grant();
    let now = Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).unwrap();
    let contexts = [
        EvalContext {
            now,
            grants: &NoGrants,
        },
        EvalContext {
            now,
            grants: &grant,
        },
    ];
    let (mut fired, mut skipped) = (vec![false; set.rules.len()], 0);
    for e in events() {
        for cx in &contexts {
            let (reachable, cand) = reachable_and_candidates(&set, &e, cx);
            for ri in &reachable {
                assert!(
                    cand.binary_search(ri).is_ok(),
                    "rule {} fires or is exempt but is not a candidate for {e:?}",
                    set.rules[*ri as usize].name
                );
                fired[*ri as usize] = true;
            }
            skipped += set.rules.len() - cand.len();
            assert_eq!(set.evaluate(&e, cx), decide_by_scan(&set, &e, cx), "{e:?}");
        }
    }
    for (rule, fired) in set.rules.iter().zip(fired) {
        assert!(fired, "no test event reaches rule {}", rule.name);
    }
    assert!(skipped > 0, "the index never left a rule out");
}

#[test]
fn a_key_source_of_another_class_is_still_checked_as_a_condition() {
    // Filed under target.comm; target.exe is a key source only for
    // mem_read rules, so an attach matches it only as this rule's
    // condition.
    let set = PolicySet::from_texts(&[(
        "r.yaml",
        r#"
rules:
  - { name: a, on: [ptrace_attach], target: { comm: [app], exe: ["/srv/app/**"] }, action: deny }
  - { name: b, on: [mem_read], target: { exe: ["/srv/other/**"] }, action: alert }
"#,
    )])
    .unwrap();
    let cx = EvalContext {
        now: Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).unwrap(),
        grants: &NoGrants,
    };
    let attach = |exe: &str| {
        PolicyEvent::from_json(&format!(
            r#"{{"kind":"ptrace","target":{{"comm":"app","exe":"{exe}"}},
            "detail":{{"ptrace_request":"PTRACE_ATTACH"}}}}"#
        ))
        .unwrap()
    };
    assert_eq!(set.evaluate(&attach("/srv/app/bin/x"), &cx).rule, Some("a"));
    assert_eq!(set.evaluate(&attach("/srv/other/x"), &cx).rule, None);
}
