//! The one line a person sees (journal, terminal) when an action is denied
//! or alerted: who did what to which process, the rule, and the exact
//! `debugmon grant` command that would allow it.

use std::fmt::Write;

use super::{
    engine::{ReadOnly, Ruling},
    event::{EventClass, PolicyEvent},
    model::Action,
};

/// The `--target` spec for a grant covering `ev`'s target: the unit when
/// known (survives restarts), else the exe, else the pid.
pub fn grant_target_spec(ev: &PolicyEvent) -> String {
    let Some(t) = &ev.target else {
        return "any".into();
    };
    if let Some(u) = t.unit.as_deref().filter(|u| !u.is_empty()) {
        format!("unit:{u}")
    } else if let Some(e) = t.exe.as_deref().filter(|e| !e.is_empty()) {
        format!("exe:{e}")
    } else if let Some(p) = t.pid {
        format!("pid:{p}")
    } else {
        "any".into()
    }
}

fn what(ev: &PolicyEvent) -> String {
    let d = &ev.detail;
    match ev.class() {
        Some(EventClass::PtraceAccess) => {
            format!(
                "ptrace {}",
                d.ptrace_request.as_deref().unwrap_or("request")
            )
        }
        Some(c @ (EventClass::MemRead | EventClass::MemWrite)) => match &d.via {
            Some(via) => format!("{} ({via})", c.describe()),
            None => c.describe().to_owned(),
        },
        Some(EventClass::DebuggerExec) => {
            format!("exec of debugger {}", d.debugger.as_deref().unwrap_or("?"))
        }
        Some(c) => c.describe().to_owned(),
        None => "event".into(),
    }
}

/// What a read-only grant or role refused: `read-only grant g-1: POKEDATA
/// refused; ask for --mode full`.
pub fn read_only_note(ev: &PolicyEvent, ro: ReadOnly<'_>) -> String {
    let change = ev
        .detail
        .ptrace_request
        .as_deref()
        .map(|r| r.trim_start_matches("PTRACE_").to_owned())
        .unwrap_or_else(|| what(ev));
    match ro {
        ReadOnly::Grant(g) => {
            format!("read-only grant {g}: {change} refused; ask for --mode full")
        }
        ReadOnly::Role(r) => {
            format!("role {r} is read-only: {change} refused; ask for --mode full")
        }
    }
}

/// E.g. `debugmon: DENIED ptrace attach by alice (uid 1001, login alice)
/// with gdb (pid 4242) on postgres (pid 77, postgresql.service): rule
/// attach-to-database. Request access: debugmon grant --user alice --target
/// unit:postgresql.service --for 30m --reason <ticket>`.
pub fn human_line(ev: &PolicyEvent, d: &Ruling<'_>) -> String {
    let a = &ev.actor;
    let verdict = match d.action {
        Action::Deny => "DENIED",
        Action::Alert => "ALERT",
        Action::Allow => "ALLOWED",
    };
    let mut s = format!("debugmon: {verdict} {} by ", what(ev));
    let mut ids = Vec::new();
    match (&a.user, a.uid) {
        (Some(u), Some(uid)) => {
            s.push_str(u);
            ids.push(format!("uid {uid}"));
        }
        (Some(u), None) => s.push_str(u),
        (None, Some(uid)) => {
            let _ = write!(s, "uid {uid}");
        }
        (None, None) => s.push_str("unknown user"),
    }
    if let Some(l) = &a.login_user {
        ids.push(format!("login {l}"));
    } else if let Some(au) = a.auid.filter(|&au| Some(au) != a.uid) {
        ids.push(format!("auid {au}"));
    }
    if !ids.is_empty() {
        let _ = write!(s, " ({})", ids.join(", "));
    }
    let prog = a.comm.as_deref().or(a.exe.as_deref());
    match (prog, a.pid) {
        (Some(p), Some(pid)) => {
            let _ = write!(s, " with {p} (pid {pid})");
        }
        (Some(p), None) => {
            let _ = write!(s, " with {p}");
        }
        (None, Some(pid)) => {
            let _ = write!(s, " from pid {pid}");
        }
        (None, None) => {}
    }
    if let Some(t) = &ev.target {
        let name = t.comm.as_deref().or(t.exe.as_deref()).unwrap_or("process");
        let mut extra = Vec::new();
        if let Some(p) = t.pid {
            extra.push(format!("pid {p}"));
        }
        if let Some(u) = &t.unit {
            extra.push(u.clone());
        }
        let _ = write!(s, " on {name}");
        if !extra.is_empty() {
            let _ = write!(s, " ({})", extra.join(", "));
        }
    }
    match d.rule {
        Some(r) => {
            let _ = write!(s, ": rule {r}");
        }
        None => {
            let _ = write!(s, ": {}", d.reason);
        }
    }
    if let Some(g) = d.grant_id {
        let _ = write!(s, " (grant {g})");
    }
    s.push('.');
    if d.action == Action::Allow {
        return s;
    }
    let mode = match d.read_only {
        Some(ro) => {
            let _ = write!(s, " {}.", read_only_note(ev, ro));
            " --mode full"
        }
        None => "",
    };
    let user = a.person().unwrap_or("<user>");
    let _ = write!(
        s,
        " Request access: debugmon grant --user {user} --target {}{mode} --for 30m --reason <ticket>",
        grant_target_spec(ev)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::Severity;

    fn decision(action: Action) -> Ruling<'static> {
        Ruling {
            action,
            rule: Some("attach-to-database"),
            severity: Severity::Critical,
            reason: "attach",
            grant_id: None,
            tags: &[],
            read_only: None,
        }
    }

    #[test]
    fn denied_line_names_everything_and_the_grant_command() {
        let ev = PolicyEvent::from_json(
            r#"{"kind":"ptrace","actor":{"pid":4242,"uid":1001,"user":"alice","login_user":"alice",
            "comm":"gdb","exe":"/usr/bin/gdb"},"target":{"pid":77,"comm":"postgres",
            "unit":"postgresql.service","exe":"/usr/lib/postgresql/15/bin/postgres"},
            "detail":{"ptrace_request":"PTRACE_ATTACH"}}"#,
        )
        .unwrap();
        assert_eq!(
            human_line(&ev, &decision(Action::Deny)),
            "debugmon: DENIED ptrace attach by alice (uid 1001, login alice) with gdb (pid 4242) \
             on postgres (pid 77, postgresql.service): rule attach-to-database. Request access: \
             debugmon grant --user alice --target unit:postgresql.service --for 30m --reason <ticket>"
        );
    }

    #[test]
    fn alert_line_falls_back_to_exe_then_pid() {
        let ev = PolicyEvent::from_json(
            r#"{"kind":"mem_access","actor":{"pid":5,"uid":0,"user":"root","login_user":"bob","comm":"python3"},
            "target":{"pid":9,"exe":"/srv/app"},"detail":{"via":"process_vm_writev","access":"write"}}"#,
        )
        .unwrap();
        let line = human_line(&ev, &decision(Action::Alert));
        assert!(line.starts_with("debugmon: ALERT memory write (process_vm_writev) by root (uid 0, login bob) with python3 (pid 5) on /srv/app (pid 9)"), "{line}");
        assert!(
            line.ends_with("--user bob --target exe:/srv/app --for 30m --reason <ticket>"),
            "{line}"
        );
        let ev = PolicyEvent::from_json(r#"{"kind":"ptrace","target":{"pid":9}}"#).unwrap();
        assert_eq!(grant_target_spec(&ev), "pid:9");
        let line = human_line(&ev, &decision(Action::Allow));
        assert!(!line.contains("Request access"), "{line}");
    }

    #[test]
    fn a_read_only_grant_says_what_it_refused_and_asks_for_full() {
        let ev = PolicyEvent::from_json(
            r#"{"kind":"ptrace","actor":{"pid":4242,"uid":1001,"user":"alice","comm":"gdb"},
            "target":{"pid":77,"comm":"postgres","unit":"postgresql.service"},
            "detail":{"ptrace_request":"PTRACE_POKEDATA","writes":true}}"#,
        )
        .unwrap();
        let mut d = decision(Action::Deny);
        d.read_only = Some(ReadOnly::Grant("g-20261206-ab12"));
        let line = human_line(&ev, &d);
        assert!(
            line.contains(
                ": rule attach-to-database. read-only grant g-20261206-ab12: POKEDATA refused; \
                 ask for --mode full. Request access: debugmon grant --user alice --target \
                 unit:postgresql.service --mode full --for 30m"
            ),
            "{line}"
        );
        d.read_only = Some(ReadOnly::Role("oncall-readonly"));
        let line = human_line(&ev, &d);
        assert!(
            line.contains(
                "role oncall-readonly is read-only: POKEDATA refused; ask for --mode full."
            ),
            "{line}"
        );
    }
}
