//! Unit tests of the engine: one per condition kind, the evaluation
//! semantics, exemptions, explain, and the diagnostics of policy check.

use chrono::{TimeZone, Utc};

use super::{
    engine::REASON_GRANTED,
    grant::{AccessMode, Grant, GrantTarget},
    *,
};

const DEBUGGERS: &str = "
debuggers:
  gdb: { exe: [gdb], comm: [gdb] }
  strace: { exe: [strace] }
roles:
  oncall: { users: [alice], groups: [sre] }
";

fn set(rules: &str) -> PolicySet {
    PolicySet::from_texts(&[("d.yaml", DEBUGGERS), ("r.yaml", rules)])
        .unwrap_or_else(|d| panic!("{}", d[0]))
}

fn ctx<'a>(grants: &'a dyn GrantLookup) -> EvalContext<'a> {
    EvalContext {
        // A Monday, 10:00 UTC.
        now: Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).unwrap(),
        grants,
    }
}

fn ev(json: &str) -> PolicyEvent {
    PolicyEvent::from_json(json).unwrap()
}

/// The rule that decided, or None.
fn decided(s: &PolicySet, e: &PolicyEvent) -> Option<String> {
    s.evaluate(e, &ctx(&NoGrants)).rule.map(str::to_owned)
}

fn one_rule(on: &str, cond: &str) -> PolicySet {
    set(&format!(
        "rules:\n  - name: r\n    on: [{on}]\n    {cond}\n    action: alert\n"
    ))
}

const ATTACH: &str = r#"{"kind":"ptrace","actor":{"pid":10,"uid":1001,"user":"bob","euid":1001,
  "auid":1001,"login_user":"bob","groups":["dev"],"exe":"/usr/bin/gdb","comm":"gdb",
  "argv":["gdb","-p","77"],"tty":"pts/1","unit":"session-3.scope"},
  "target":{"pid":77,"comm":"postgres","exe":"/usr/lib/postgresql/15/bin/postgres","uid":105,
  "user":"postgres","unit":"postgresql.service"},"detail":{"ptrace_request":"PTRACE_ATTACH"}}"#;

#[test]
fn each_condition_kind_matches_and_mismatches() {
    let e = ev(ATTACH);
    let cases: &[(&str, &str, bool)] = &[
        ("actor.users", "actor: { users: [bob] }", true),
        ("actor.users", "actor: { users: [carol] }", false),
        ("actor.groups", "actor: { groups: [dev] }", true),
        ("actor.groups", "actor: { groups: [sre] }", false),
        ("actor.roles", "actor: { roles: [oncall] }", false),
        ("actor.uids", "actor: { uids: [1001] }", true),
        ("actor.uids", "actor: { uids: [0] }", false),
        ("actor.euids", "actor: { euids: [0] }", false),
        ("actor.auids", "actor: { auids: [1001] }", true),
        ("actor.login_users", "actor: { login_users: [bob] }", true),
        ("actor.exe basename", "actor: { exe: [gdb] }", true),
        ("actor.exe glob", "actor: { exe: [\"/usr/bin/*\"] }", true),
        (
            "actor.exe glob",
            "actor: { exe: [\"/usr/local/*\"] }",
            false,
        ),
        ("actor.comm", "actor: { comm: [\"g?b\"] }", true),
        ("actor.unit", "actor: { unit: [\"session-*.scope\"] }", true),
        ("actor.debugger", "actor: { debugger: [gdb] }", true),
        ("actor.debugger", "actor: { debugger: [strace] }", false),
        ("argv_contains", "actor: { argv_contains: [\"-p\"] }", true),
        (
            "argv_contains",
            "actor: { argv_contains: [\"--pid\"] }",
            false,
        ),
        ("argv_regex", "actor: { argv_regex: '-p\\s+\\d+' }", true),
        ("argv_regex", "actor: { argv_regex: '^strace' }", false),
        ("tty", "actor: { tty: true }", true),
        ("ssh", "actor: { ssh: true }", false),
        ("ssh", "actor: { ssh: false }", true),
        ("actor.container", "actor: { container: false }", true),
        ("login_differs", "actor: { login_differs: true }", false),
        ("target.comm", "target: { comm: [postgres] }", true),
        ("target.comm", "target: { comm: [mysqld] }", false),
        (
            "target.exe",
            "target: { exe: [\"/usr/lib/postgresql/*/bin/postgres\"] }",
            true,
        ),
        ("target.users", "target: { users: [postgres] }", true),
        ("target.uids", "target: { uids: [0] }", false),
        (
            "target.unit",
            "target: { unit: [postgresql.service] }",
            true,
        ),
        ("target.container", "target: { container: true }", false),
        ("target.other_user", "target: { other_user: true }", true),
        (
            "target.same_process",
            "target: { same_process: true }",
            false,
        ),
        (
            "detail.ptrace_request",
            "detail: { ptrace_request: [\"PTRACE_AT*\"] }",
            true,
        ),
        ("detail.via", "detail: { via: [proc_mem] }", false),
        (
            "context.hours",
            "context: { hours: \"09:00-18:00\", days: [mon-fri] }",
            true,
        ),
        (
            "context.hours",
            "context: { hours: \"18:00-09:00\" }",
            false,
        ),
        ("context.days", "context: { days: [sat, sun] }", false),
        (
            "context.timezone",
            "context: { hours: \"09:00-10:00\", timezone: \"-01:00\" }",
            true,
        ),
    ];
    for (what, cond, want) in cases {
        let s = one_rule("ptrace_attach", cond);
        assert_eq!(decided(&s, &e).is_some(), *want, "{what}: {cond}");
    }
}

#[test]
fn roles_come_from_user_login_user_and_groups() {
    let s = one_rule("ptrace_attach", "actor: { roles: [oncall] }");
    let by = |actor: &str| {
        decided(
            &s,
            &ev(&format!(
                r#"{{"kind":"ptrace","actor":{actor},"detail":{{"ptrace_request":"PTRACE_SEIZE"}}}}"#
            )),
        )
    };
    assert!(by(r#"{"user":"alice"}"#).is_some());
    assert!(by(r#"{"user":"root","login_user":"alice"}"#).is_some());
    assert!(by(r#"{"user":"carol","groups":["sre"]}"#).is_some());
    assert!(by(r#"{"user":"carol","groups":["dev"]}"#).is_none());
}

#[test]
fn triggers_select_event_classes() {
    let exec = ev(r#"{"kind":"exec","actor":{"exe":"/bin/ls"}}"#);
    let dbg = ev(r#"{"kind":"exec","actor":{"exe":"/usr/bin/gdb"},"detail":{"debugger":"gdb"}}"#);
    let read = ev(r#"{"kind":"mem_access","detail":{"via":"process_vm_readv","access":"read"}}"#);
    let write = ev(r#"{"kind":"mem_access","detail":{"via":"proc_mem","access":"write"}}"#);
    let getfd = ev(r#"{"kind":"mem_access","detail":{"via":"pidfd_getfd","access":"read"}}"#);
    let poke = ev(r#"{"kind":"ptrace","detail":{"ptrace_request":"PTRACE_POKEDATA"}}"#);
    let traceme = ev(r#"{"kind":"ptrace","detail":{"ptrace_request":"PTRACE_TRACEME"}}"#);
    let perf = ev(r#"{"kind":"perf_attach"}"#);
    let bpf = ev(r#"{"kind":"bpf","detail":{"prog_type":"kprobe"}}"#);
    let all = [
        &exec, &dbg, &read, &write, &getfd, &poke, &traceme, &perf, &bpf,
    ];
    for (on, fires) in [
        (
            "exec",
            [true, true, false, false, false, false, false, false, false],
        ),
        (
            "debugger_exec",
            [false, true, false, false, false, false, false, false, false],
        ),
        (
            "mem_read",
            [false, false, true, false, false, false, false, false, false],
        ),
        (
            "mem_write",
            [false, false, false, true, false, false, false, false, false],
        ),
        (
            "mem_access",
            [false, false, true, true, false, false, false, false, false],
        ),
        (
            "pidfd_getfd",
            [false, false, false, false, true, false, false, false, false],
        ),
        (
            "ptrace_access",
            [false, false, false, false, false, true, false, false, false],
        ),
        (
            "ptrace_traceme",
            [false, false, false, false, false, false, true, false, false],
        ),
        (
            "perf_attach",
            [false, false, false, false, false, false, false, true, false],
        ),
        (
            "bpf_load",
            [false, false, false, false, false, false, false, false, true],
        ),
    ] {
        let s = one_rule(on, "tags: []");
        let got: Vec<bool> = all.iter().map(|e| decided(&s, e).is_some()).collect();
        assert_eq!(got, fires, "on: {on}");
    }
    let s = one_rule("bpf_load", "detail: { prog_type: [kprobe] }");
    assert!(decided(&s, &bpf).is_some());
    // Records no rule applies to are allowed with the default decision.
    let s = one_rule("exec", "tags: []");
    let d = s.evaluate(&ev(r#"{"kind":"grant"}"#), &ctx(&NoGrants));
    assert_eq!((d.action, d.rule), (Action::Allow, None));
}

#[test]
fn strongest_action_then_severity_then_load_order_wins() {
    let s = set("
rules:
  - { name: first-alert, on: [ptrace_attach], action: alert, severity: critical }
  - { name: a-deny, on: [ptrace_attach], action: deny, severity: low }
  - { name: b-deny, on: [ptrace_attach], action: deny, severity: high }
  - { name: c-deny, on: [ptrace_attach], action: deny, severity: high }
  - { name: allow, on: [ptrace_attach], action: allow }
");
    let d = s.evaluate(&ev(ATTACH), &ctx(&NoGrants));
    assert_eq!(d.rule, Some("b-deny"));
    assert_eq!((d.action, d.severity), (Action::Deny, Severity::High));
    // An allow rule decides only when nothing stronger fires.
    let s = set("
rules:
  - { name: ok, on: [ptrace_attach], action: allow, title: known }
  - { name: other, on: [exec], action: deny }
");
    let d = s.evaluate(&ev(ATTACH), &ctx(&NoGrants));
    assert_eq!(
        (d.action, d.rule, d.reason),
        (Action::Allow, Some("ok"), "known")
    );
    // No rule: allowed, log only.
    let d = s.evaluate(&ev(r#"{"kind":"perf_attach"}"#), &ctx(&NoGrants));
    assert_eq!(
        (d.action, d.rule, d.severity),
        (Action::Allow, None, Severity::Info)
    );
}

struct OneGrant(Grant);

impl GrantLookup for OneGrant {
    fn active_for(&self, user: &str, t: Option<&event::Target>) -> Option<&Grant> {
        (self.0.user == user && self.0.target.covers(t)).then_some(&self.0)
    }
}

fn grant(user: &str, target: &str) -> OneGrant {
    let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 9, 0, 0).unwrap();
    OneGrant(Grant {
        id: "g-1".into(),
        user: user.into(),
        target: target.parse::<GrantTarget>().unwrap(),
        mode: AccessMode::Full,
        reason: "INC-1".into(),
        created: t0,
        expires: t0 + chrono::Duration::hours(2),
        start_tick: None,
        requested_by: None,
        approved: None,
    })
}

#[test]
fn exemptions_by_role_user_exe_comm_and_grant() {
    let e = ev(ATTACH);
    for (unless, exempt) in [
        ("{ role: [oncall] }", false),
        ("{ users: [bob] }", true),
        // `e` does not say its program is trusted: no exemption by exe.
        ("{ exe: [gdb] }", false),
        ("{ comm: [strace] }", false),
        ("{ grant: true }", false),
    ] {
        let s = one_rule("ptrace_attach", &format!("unless: {unless}"));
        assert_eq!(decided(&s, &e).is_none(), exempt, "{unless}");
    }
    let trusted = ev(&ATTACH.replace(r#""euid":1001"#, r#""euid":1001,"exe_trusted":true"#));
    let s = one_rule("ptrace_attach", "unless: { exe: [gdb] }");
    assert!(decided(&s, &trusted).is_none(), "a trusted gdb is exempt");
    let s = set("
rules:
  - { name: db, on: [ptrace_attach], target: { comm: [postgres] }, unless: { grant: true }, action: deny }
");
    let g = grant("bob", "unit:postgresql.service");
    let d = s.evaluate(&e, &ctx(&g));
    assert_eq!(
        (d.action, d.rule, d.grant_id),
        (Action::Allow, Some("db"), Some("g-1"))
    );
    assert_eq!(d.reason, REASON_GRANTED);
    // A grant for another unit or another user does not cover it.
    assert_eq!(
        s.evaluate(&e, &ctx(&grant("bob", "unit:x"))).action,
        Action::Deny
    );
    assert_eq!(
        s.evaluate(&e, &ctx(&grant("eve", "any"))).action,
        Action::Deny
    );
}

#[test]
fn a_read_only_grant_or_role_covers_looking_not_changing() {
    let s = set("
roles:
  viewers: { users: [bob], access: read }
  fixers: { users: [carol] }
rules:
  - name: db
    on: [ptrace_attach, ptrace_access, mem_read, mem_write, pidfd_getfd]
    target: { comm: [postgres] }
    unless: { role: [viewers, fixers], grant: true }
    action: deny
");
    let with = |detail: &str| ev(&ATTACH.replace(r#""ptrace_request":"PTRACE_ATTACH""#, detail));
    let attach = ev(ATTACH);
    let peek = with(r#""ptrace_request":"PTRACE_PEEKDATA""#);
    let poke = with(r#""ptrace_request":"PTRACE_POKEDATA","writes":true"#);
    let mut vm_write = with(r#""via":"process_vm_writev","access":"write""#);
    vm_write.kind = event::Kind::MemAccess;
    let mut getfd = with(r#""via":"pidfd_getfd","access":"fd""#);
    getfd.kind = event::Kind::MemAccess;
    // A writing open of /proc/PID/mem alone is not a change: each write
    // through it is judged when it happens.
    let mut open_rw = with(r#""via":"proc_mem","access":"write""#);
    open_rw.kind = event::Kind::MemAccess;
    assert!(!open_rw.writes() && poke.writes() && vm_write.writes() && getfd.writes());

    // bob's role is read-only: he may look, not change.
    for e in [&attach, &peek, &open_rw] {
        assert_eq!(s.evaluate(e, &ctx(&NoGrants)).action, Action::Allow);
    }
    for e in [&poke, &vm_write, &getfd] {
        let d = s.evaluate(e, &ctx(&NoGrants));
        assert_eq!(d.action, Action::Deny);
        assert_eq!(d.read_only, Some(ReadOnly::Role("viewers")));
    }
    // carol's role is full.
    let carol = |e: &PolicyEvent| {
        let mut e = e.clone();
        e.actor.user = Some("carol".into());
        e.actor.login_user = Some("carol".into());
        e
    };
    assert_eq!(
        s.evaluate(&carol(&poke), &ctx(&NoGrants)).action,
        Action::Allow
    );

    // A read grant: the same split, and the denial names it.
    let s = set("
rules:
  - { name: db, on: [ptrace_attach, ptrace_access], target: { comm: [postgres] }, unless: { grant: true }, action: deny }
");
    let mut read = grant("bob", "unit:postgresql.service");
    read.0.mode = AccessMode::Read;
    let d = s.evaluate(&peek, &ctx(&read));
    assert_eq!((d.action, d.grant_id), (Action::Allow, Some("g-1")));
    let d = s.evaluate(&poke, &ctx(&read));
    assert_eq!(
        (d.action, d.grant_id, d.read_only),
        (Action::Deny, None, Some(ReadOnly::Grant("g-1")))
    );
    let full = grant("bob", "unit:postgresql.service");
    assert_eq!(s.evaluate(&poke, &ctx(&full)).action, Action::Allow);
    // policy explain says so.
    let text = explain(&s, &poke, &ctx(&read)).to_string();
    assert!(
        text.contains("[grant g-1 covers the target read-only; this changes it]"),
        "{text}"
    );
    let text = explain(&s, &peek, &ctx(&read)).to_string();
    assert!(text.contains("read access"), "{text}");
}

#[test]
fn roles_declared_read_and_full_in_two_files_are_refused() {
    let err = PolicySet::from_texts(&[
        (
            "a.yaml",
            "roles:\n  viewers: { users: [bob], access: read }\n",
        ),
        (
            "b.yaml",
            "roles:\n  viewers: { users: [eve], access: full }\n",
        ),
    ])
    .unwrap_err();
    assert!(
        err[0]
            .to_string()
            .contains("role viewers is declared with access read elsewhere and full here"),
        "{}",
        err[0]
    );
    // A drop-in that only adds members keeps the role read-only.
    let s = PolicySet::from_texts(&[
        (
            "a.yaml",
            "roles:\n  viewers: { users: [bob], access: read }\n",
        ),
        ("b.yaml", "roles:\n  viewers: { users: [eve] }\n"),
    ])
    .unwrap();
    assert_eq!(s.read_roles, 1);
}

#[test]
fn debugger_class_uses_the_policy_data() {
    let s = set("rules: []");
    assert_eq!(s.debugger_class("/usr/bin/gdb", "gdb"), Some("gdb"));
    assert_eq!(s.debugger_class("/opt/x/strace", "x"), Some("strace"));
    assert_eq!(s.debugger_class("", "gdb"), Some("gdb"));
    assert_eq!(s.debugger_class("/bin/ls", "ls"), None);
}

#[test]
fn explain_names_the_decider_and_the_first_failing_condition() {
    let s = set("
rules:
  - { name: db, on: [ptrace_attach], target: { comm: [postgres] }, action: deny, severity: critical }
  - { name: sshd, on: [ptrace_attach], actor: { uids: [1001] }, target: { comm: [sshd] }, action: deny }
  - { name: execs, on: [exec], action: alert }
  - { name: team, on: [ptrace_attach], unless: { role: [oncall] }, action: alert }
");
    let e = ev(&ATTACH.replace("\"bob\"", "\"alice\""));
    let x = explain(&s, &e, &ctx(&NoGrants));
    assert_eq!(x.decision.rule, Some("db"));
    let v: Vec<&explain::Verdict> = x.rules.iter().map(|r| &r.verdict).collect();
    assert_eq!(v[0], &explain::Verdict::Decided);
    assert_eq!(
        v[1],
        &explain::Verdict::NoMatch("target.comm `postgres` matches none of [sshd]".into())
    );
    assert_eq!(v[2], &explain::Verdict::NotTriggered);
    assert_eq!(
        v[3],
        &explain::Verdict::Exempt("actor has role oncall".into())
    );
    let text = x.to_string();
    assert!(
        text.contains("decision: DENY by rule db (critical)"),
        "{text}"
    );
    assert!(text.contains("* db (r.yaml:3:5): DECIDED"), "{text}");
}

fn diags(text: &str) -> Vec<String> {
    PolicySet::from_texts(&[("p.yaml", text)])
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn every_error_is_reported_with_its_position() {
    let d = diags(
        "roles:
  ops: { users: [a] }
rules:
  - name: one
    on: [ptrace_attach]
    actor: { exe: [\"[oops\"], roles: [nope], argv_regex: \"(\" }
    context: { hours: \"9-5\" }
    action: deny
  - name: one
    on: [exec]
    action: alert
  - name: two
    on: [ptrace_atach]
    action: deny
  - name: three
    on: [exec]
    colour: red
    action: alert
extra: 1
",
    );
    let want = [
        "p.yaml:19:1: unknown field `extra`, expected one of `roles`, `rules`, `debuggers`, `process_tools`",
        "p.yaml:6:20: bad glob `[oops` in actor.exe: unclosed character class; missing ']'",
        "p.yaml:6:38: unknown role `nope`",
        "p.yaml:6:57: bad regex: unclosed group",
        "p.yaml:7:23: bad time window `9-5`: expected HH:MM-HH:MM, e.g. 09:00-18:00",
        "p.yaml:9:11: duplicate rule name `one` (first defined at p.yaml:4:11)",
        "p.yaml:13:10: unknown variant `ptrace_atach`, expected one of `exec`, `debugger_exec`, \
         `ptrace_attach`, `ptrace_traceme`, `ptrace_access`, `mem_read`, `mem_write`, \
         `mem_access`, `perf_attach`, `bpf_load`, `pidfd_getfd`, `inventory_read`, `debug_signal`, \
         `debug_port`, `library_injection`, `core_dump`, `inventory`",
    ];
    for w in want {
        assert!(d.iter().any(|x| x == w), "missing {w}\n got: {d:#?}");
    }
    assert!(
        d.iter()
            .any(|x| x.starts_with("p.yaml:17:5: unknown field `colour`")),
        "{d:#?}"
    );
    assert_eq!(d.len(), want.len() + 1, "{d:#?}");
}
