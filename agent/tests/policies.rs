//! Corpus tests: every shipped `policies/*.yaml` loads, a table of events
//! gets the expected decisions from the shipped set (plus a site drop-in
//! that fills the `oncall` role), and `policy check` reports each error of
//! the broken fixtures at its exact `file:line:column`.

use std::path::{Path, PathBuf};

use agent::{
    grants::{Grant, GrantTarget},
    policy::{
        Action, EvalContext, GrantLookup, NoGrants, PolicyEvent, PolicySet, check_paths,
        event::Target, human_line,
    },
};
use chrono::{TimeZone, Utc};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

#[test]
fn every_shipped_file_loads_and_has_metadata() {
    let files: Vec<PathBuf> = std::fs::read_dir(shipped())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(files.len() >= 4, "{files:?}");
    // The files are one set: a rule may use a role another file defines.
    let d = check_paths(&files);
    assert!(d.is_empty(), "{}", d[0]);
    let set = PolicySet::load_dirs(&[shipped()]).unwrap();
    assert!(set.rule_count() >= 10);
    for r in set.rules() {
        assert!(r.title.is_some(), "{} has no title", r.name);
        assert!(
            r.tags.iter().any(|t| t.starts_with("attack.t")),
            "{} has no MITRE technique",
            r.name
        );
    }
    assert_eq!(set.content_hash().len(), 64);
    assert_eq!(
        set.debugger_class("/usr/bin/perf_6.1", "perf_6.1"),
        Some("perf")
    );
    assert_eq!(set.debugger_class("/usr/bin/gdb", "gdb"), Some("gdb"));
    assert_eq!(set.debugger_class("/usr/bin/python3", "python3"), None);
}

struct Grants(Vec<Grant>);

impl GrantLookup for Grants {
    fn active_for(&self, user: &str, t: Option<&Target>) -> Option<&Grant> {
        self.0.iter().find(|g| g.user == user && g.target.covers(t))
    }
}

fn actor(user: &str, uid: u32, comm: &str) -> String {
    format!(
        r#"{{"pid":4242,"uid":{uid},"euid":{uid},"auid":{uid},"user":"{user}","login_user":"{user}",
        "comm":"{comm}","exe":"/usr/bin/{comm}","exe_trusted":true,"groups":[]}}"#
    )
}

fn target(comm: &str, uid: u32, unit: &str) -> String {
    format!(r#"{{"pid":77,"comm":"{comm}","exe":"/usr/sbin/{comm}","uid":{uid},"unit":"{unit}"}}"#)
}

fn ptrace(actor: &str, target: &str, req: &str) -> String {
    format!(
        r#"{{"kind":"ptrace","actor":{actor},"target":{target},"detail":{{"ptrace_request":"{req}"}}}}"#
    )
}

fn mem(actor: &str, target: &str, via: &str, access: &str) -> String {
    format!(
        r#"{{"kind":"mem_access","actor":{actor},"target":{target},"detail":{{"via":"{via}","access":"{access}"}}}}"#
    )
}

#[test]
fn shipped_policies_decide_the_table() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(
        site.path().join("roles.yaml"),
        "roles:\n  oncall: { users: [ann] }\n",
    )
    .unwrap();
    let set = PolicySet::load_dirs(&[shipped(), site.path().to_owned()]).unwrap();
    let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).unwrap();
    let grants = Grants(vec![Grant {
        id: "g-1".into(),
        user: "carl".into(),
        target: GrantTarget::Unit("postgresql.service".into()),
        reason: "INC-1".into(),
        created: t0,
        expires: t0 + chrono::Duration::hours(1),
        start_tick: None,
        requested_by: None,
        approved: None,
        mode: Default::default(),
    }]);

    let bob = actor("bob", 1001, "gdb");
    let carl = actor("carl", 1003, "gdb");
    let ann = actor("ann", 1004, "gdb");
    let pg = target("postgres", 105, "postgresql.service");
    let alice_app = target("app", 1002, "app.service");
    let bob_app = target("app", 1001, "user@1001.service");
    let sudo_gdb = r#"{"pid":9,"uid":0,"euid":0,"auid":1001,"user":"root","login_user":"bob","comm":"gdb","exe":"/usr/bin/gdb"}"#;
    let cases: Vec<(&str, String, Action, Option<&str>)> = vec![
        ("db attach", ptrace(&bob, &pg, "PTRACE_ATTACH"), Action::Deny, Some("attach-to-database")),
        ("db seize", ptrace(&bob, &target("mariadbd", 106, "mariadb.service"), "PTRACE_SEIZE"), Action::Deny, Some("attach-to-database")),
        ("db poke: deny beats alert", ptrace(&bob, &pg, "PTRACE_POKEDATA"), Action::Deny, Some("attach-to-database")),
        ("db read", mem(&bob, &target("redis-server", 107, "redis.service"), "process_vm_readv", "read"), Action::Deny, Some("attach-to-database")),
        ("db with grant", ptrace(&carl, &pg, "PTRACE_ATTACH"), Action::Allow, Some("attach-to-database")),
        ("db by oncall", ptrace(&ann, &pg, "PTRACE_ATTACH"), Action::Allow, None),
        ("sshd", ptrace(sudo_gdb, &target("sshd", 0, "ssh.service"), "PTRACE_ATTACH"), Action::Deny, Some("attach-to-sshd")),
        // The agent protects itself without a rule; a namesake is nobody.
        ("a process named debugmon", ptrace(&ann, &target("debugmon", 1002, "app.service"), "PTRACE_ATTACH"), Action::Allow, None),
        ("other user", ptrace(&bob, &alice_app, "PTRACE_ATTACH"), Action::Alert, Some("debugger-other-user")),
        ("own process", ptrace(&bob, &bob_app, "PTRACE_ATTACH"), Action::Allow, None),
        ("vm write", mem(&bob, &alice_app, "process_vm_writev", "write"), Action::Alert, Some("process-memory-write")),
        ("proc mem write own", mem(&bob, r#"{"pid":4242,"comm":"gdb","uid":1001}"#, "proc_mem", "write"), Action::Allow, None),
        ("poke", ptrace(&bob, &bob_app, "PTRACE_POKETEXT"), Action::Alert, Some("ptrace-poke")),
        ("setregs", ptrace(&bob, &bob_app, "PTRACE_SETREGS"), Action::Alert, Some("ptrace-poke")),
        ("peek own", ptrace(&bob, &bob_app, "PTRACE_PEEKDATA"), Action::Allow, None),
        ("traceme", format!(r#"{{"kind":"ptrace","actor":{},"detail":{{"ptrace_request":"PTRACE_TRACEME"}}}}"#, actor("bob", 1001, "packed")), Action::Alert, Some("anti-debug-traceme")),
        ("traceme from gdb", format!(r#"{{"kind":"ptrace","actor":{bob},"detail":{{"ptrace_request":"PTRACE_TRACEME"}}}}"#), Action::Allow, None),
        ("traceme from a copy named gdb", r#"{"kind":"ptrace","actor":{"uid":1001,"user":"bob","comm":"gdb","exe":"/tmp/gdb","exe_trusted":false},"detail":{"ptrace_request":"PTRACE_TRACEME"}}"#.into(), Action::Alert, Some("anti-debug-traceme")),
        ("traceme from gdb bind-mounted by a user", r#"{"kind":"ptrace","actor":{"uid":1001,"user":"bob","comm":"gdb","exe":"/usr/bin/gdb","exe_trusted":false},"detail":{"ptrace_request":"PTRACE_TRACEME"}}"#.into(), Action::Alert, Some("anti-debug-traceme")),
        ("sudo gdb", format!(r#"{{"kind":"exec","actor":{sudo_gdb},"detail":{{"debugger":"gdb"}}}}"#), Action::Alert, Some("debugger-via-sudo")),
        ("strace", format!(r#"{{"kind":"exec","actor":{},"detail":{{"debugger":"strace"}}}}"#, actor("bob", 1001, "strace")), Action::Alert, Some("debugger-exec")),
        ("plain exec", format!(r#"{{"kind":"exec","actor":{}}}"#, actor("bob", 1001, "ls")), Action::Allow, None),
        ("perf", format!(r#"{{"kind":"perf_attach","actor":{},"target":{alice_app}}}"#, actor("bob", 1001, "perf")), Action::Alert, Some("perf-outside-allowlist")),
        ("bpf by systemd", r#"{"kind":"bpf","actor":{"uid":0,"exe":"/usr/lib/systemd/systemd","exe_trusted":true,"comm":"systemd"},"detail":{"prog_type":"cgroup_skb"}}"#.into(), Action::Allow, None),
        ("bpf by a fake debugmon", r#"{"kind":"bpf","actor":{"uid":0,"exe":"/tmp/debugmon","exe_trusted":false,"comm":"debugmon"},"detail":{"prog_type":"kprobe"}}"#.into(), Action::Alert, Some("bpf-outside-allowlist")),
        ("bpf by other", r#"{"kind":"bpf","actor":{"uid":0,"exe":"/tmp/x","comm":"x"},"detail":{"prog_type":"kprobe"}}"#.into(), Action::Alert, Some("bpf-outside-allowlist")),
        ("fd theft", mem(&bob, &alice_app, "pidfd_getfd", "read"), Action::Alert, Some("fd-theft")),
        // ps lists environments: inventory, even sshd's.
        ("ps reads sshd's environment", format!(r#"{{"kind":"mem_access","actor":{},"target":{},"detail":{{"via":"proc_environ","access":"read","inventory":true}}}}"#, actor("root", 0, "ps"), target("sshd", 0, "ssh.service")), Action::Allow, None),
        ("a script reads sshd's environment", mem(&actor("bob", 1001, "python3"), &target("sshd", 0, "ssh.service"), "proc_environ", "read"), Action::Deny, Some("attach-to-sshd")),
        // Credential dumping: memory read by a program that is not a debugger.
        ("mem read by a non-debugger", mem(&actor("bob", 1001, "python3"), &bob_app, "proc_mem", "read"), Action::Alert, Some("memory-read-outside-a-debugger")),
        ("vm read by a non-debugger", mem(&actor("bob", 1001, "python3"), &alice_app, "process_vm_readv", "read"), Action::Alert, Some("memory-read-outside-a-debugger")),
        ("mem read by gdb", mem(&bob, &bob_app, "proc_mem", "read"), Action::Allow, None),
        ("mem read by a copy of gdb", mem(r#"{"pid":5,"uid":1001,"user":"bob","comm":"gdb","exe":"/tmp/gdb","exe_trusted":false}"#, &bob_app, "proc_mem", "read"), Action::Alert, Some("memory-read-outside-a-debugger")),
        ("peek by a non-debugger", ptrace(&actor("bob", 1001, "python3"), &bob_app, "PTRACE_PEEKDATA"), Action::Alert, Some("ptrace-peek-outside-a-debugger")),
        // Debug interfaces beyond ptrace.
        ("jdwp on every address", format!(r#"{{"kind":"exec","actor":{},"detail":{{"debug_switches":["jdwp","jdwp:any_address"]}}}}"#, actor("bob", 1001, "java")), Action::Alert, Some("debug-interface-on-every-address")),
        ("jdwp on localhost", format!(r#"{{"kind":"exec","actor":{},"detail":{{"debug_switches":["jdwp"]}}}}"#, actor("bob", 1001, "java")), Action::Alert, Some("jvm-debug-interface-at-launch")),
        ("inspector port", format!(r#"{{"kind":"debug_port","actor":{},"detail":{{"debug_switches":["node_inspector"]}}}}"#, actor("bob", 1001, "node")), Action::Alert, Some("debug-port-opened")),
        ("jcmd attach", format!(r#"{{"kind":"debug_signal","actor":{},"target":{alice_app},"detail":{{"debug_switches":["jvm_attach"]}}}}"#, actor("bob", 1001, "jcmd")), Action::Alert, Some("runtime-debug-signal")),
        ("preload from /tmp", format!(r#"{{"kind":"exec","actor":{},"detail":{{"debug_switches":["ld_preload","ld_preload:writable_dir"]}}}}"#, actor("bob", 1001, "ls")), Action::Alert, Some("library-preload-from-a-writable-directory")),
        ("preload from /usr/lib", format!(r#"{{"kind":"exec","actor":{},"detail":{{"debug_switches":["ld_preload"]}}}}"#, actor("bob", 1001, "ls")), Action::Allow, None),
        ("ld.so.preload", format!(r#"{{"kind":"injection","actor":{},"detail":{{"via":"ld_so_preload","access":"write"}}}}"#, actor("root", 0, "tee")), Action::Alert, Some("system-wide-preload-written")),
        ("kcore", format!(r#"{{"kind":"mem_access","actor":{},"detail":{{"via":"kcore","access":"read"}}}}"#, actor("root", 0, "dd")), Action::Alert, Some("kernel-memory-read")),
        // The host inventory's findings.
        ("inventory: jdwp on every address", format!(r#"{{"kind":"inventory","actor":{},"detail":{{"event":"finding","findings":["debug_port","debug_port:jdwp","debug_port:any_address"]}}}}"#, actor("bob", 1001, "java")), Action::Alert, Some("inventory-debug-port-on-every-address")),
        ("inventory: a port on localhost", format!(r#"{{"kind":"inventory","actor":{},"detail":{{"event":"finding","findings":["debug_port","debug_port:jdwp"]}}}}"#, actor("bob", 1001, "java")), Action::Allow, None),
        ("inventory: traced by a non-debugger", format!(r#"{{"kind":"inventory","actor":{},"target":{alice_app},"detail":{{"event":"finding","findings":["traced","traced:non_debugger"]}}}}"#, actor("bob", 1001, "helper")), Action::Alert, Some("inventory-traced-by-a-non-debugger")),
        ("inventory: traced by gdb", format!(r#"{{"kind":"inventory","actor":{},"target":{alice_app},"detail":{{"event":"finding","findings":["traced"]}}}}"#, actor("bob", 1001, "gdb")), Action::Allow, None),
        ("inventory: ld.so.preload", r#"{"kind":"inventory","detail":{"event":"snapshot","findings":["ld_so_preload","lockdown:none"]}}"#.into(), Action::Alert, Some("inventory-system-wide-preload")),
        ("inventory: LD_PRELOAD", format!(r#"{{"kind":"inventory","actor":{},"detail":{{"event":"finding","findings":["debug_switch:ld_preload"]}}}}"#, actor("bob", 1001, "sleep")), Action::Alert, Some("inventory-library-preloaded-in-a-process")),
        ("inventory: a hardened kernel", r#"{"kind":"inventory","detail":{"event":"snapshot","findings":[]}}"#.into(), Action::Allow, None),
        ("sshd dumped core", format!(r#"{{"kind":"core_dump","actor":{},"target":{}}}"#, actor("root", 0, "sshd"), target("sshd", 0, "ssh.service")), Action::Alert, Some("core-dump-of-a-protected-process")),
    ];
    assert!(cases.len() >= 15);
    let ctx = EvalContext {
        now: t0,
        grants: &grants,
    };
    for (what, json, action, rule) in &cases {
        let e = PolicyEvent::from_json(json).unwrap_or_else(|err| panic!("{what}: {err}"));
        let d = set.evaluate(&e, &ctx);
        assert_eq!((d.action, d.rule), (*action, *rule), "{what}");
        if d.action != Action::Allow {
            let line = human_line(&e, &d);
            assert!(line.contains(rule.unwrap()), "{what}: {line}");
        }
    }
    // Without grants the granted case is denied.
    let e = PolicyEvent::from_json(&ptrace(&carl, &pg, "PTRACE_ATTACH")).unwrap();
    let d = set.evaluate(
        &e,
        &EvalContext {
            now: t0,
            grants: &NoGrants,
        },
    );
    assert_eq!(d.action, Action::Deny);
}

#[test]
fn policy_check_reports_every_broken_fixture_at_its_position() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies-broken");
    let mut got: Vec<String> = check_paths(std::slice::from_ref(&dir))
        .iter()
        .map(|d| {
            d.to_string()
                .strip_prefix(&format!("{}/", dir.display()))
                .expect("diagnostics name the file")
                .to_owned()
        })
        .collect();
    got.sort();
    let want = [
        "bad-glob.yaml:5:26: bad glob `/usr/bin/[gdb` in target.exe: unclosed character class; missing ']'",
        "bad-regex.yaml:5:26: bad regex: repetition operator missing expression",
        "bad-time.yaml:6:19: bad day `someday`: expected mon..sun or a range such as mon-fri",
        "bad-time.yaml:7:14: bad time window `25:00-26:00`: expected HH:MM-HH:MM, e.g. 09:00-18:00",
        "duplicate.yaml:8:11: duplicate rule name `same-name` (first defined at DIR/duplicate.yaml:5:11)",
        "syntax.yaml:4:1: while parsing a flow sequence, expected ',' or ']'",
        "unknown-field.yaml:5:5: unknown field `severty`, expected one of `name`, `on`, `actor`, `target`, `detail`, `context`, `unless`, `action`, `severity`, `tags`, `title`, `description`",
        "unknown-role.yaml:5:30: unknown role `dbas`",
        "unknown-trigger.yaml:4:20: unknown variant `ptrace_atach`, expected one of `exec`, `debugger_exec`, `ptrace_attach`, `ptrace_traceme`, `ptrace_access`, `mem_read`, `mem_write`, `mem_access`, `perf_attach`, `bpf_load`, `pidfd_getfd`, `inventory_read`, `debug_signal`, `debug_port`, `library_injection`, `core_dump`, `inventory`",
    ];
    let want: Vec<String> = want
        .iter()
        .map(|w| w.replace("DIR", &dir.display().to_string()))
        .collect();
    assert_eq!(got, want);
}
