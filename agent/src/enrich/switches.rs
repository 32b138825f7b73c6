//! Debug and injection switches a program was started with, from its argv
//! and the few environment variables the kernel captured at exec: a JVM
//! with JDWP or an agent, Node's inspector, debugpy, a headless delve,
//! gdbserver, .NET diagnostics, and library injection through
//! `LD_PRELOAD`/`LD_AUDIT`. Each is named by its interface and, where one
//! applies, a risk: `any_address` (the debug port listens on every
//! address), `no_auth` (JMX without authentication), `writable_dir` (a
//! library or agent from a directory anyone may write). Pure: the
//! directory check reads metadata only.

use std::{os::unix::fs::MetadataExt as _, path::Path};

use serde::Serialize;

/// The variables the kernel reports at exec unless configured otherwise.
pub const DEFAULT_ENV_NAMES: &[&str] = &[
    "LD_PRELOAD",
    "LD_AUDIT",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "NODE_OPTIONS",
    "PYTHONBREAKPOINT",
    "DOTNET_DiagnosticPorts",
    "DOTNET_EnableDiagnostics",
    "CORECLR_ENABLE_PROFILING",
    "CORECLR_PROFILER_PATH",
];

/// One switch (docs/records.md, `debug_switches`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Switch {
    pub interface: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<&'static str>,
    /// `argv`, or `env:NAME`.
    pub via: String,
}

impl Switch {
    /// How policy sees it: `INTERFACE`, and `INTERFACE:RISK` as well.
    pub fn policy_names(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.interface.to_owned())
            .chain(self.risk.map(|r| format!("{}:{r}", self.interface)))
    }
}

/// The switches in `argv` (of program `exe`) and `env`.
pub fn detect(exe: &str, argv: &[String], env: &[(String, String)]) -> Vec<Switch> {
    let mut out = Vec::new();
    let name = exe.rsplit('/').next().unwrap_or(exe);
    scan_words(argv.iter().map(String::as_str), "argv", &mut out);
    program(name, argv, &mut out);
    for (k, v) in env {
        let via = format!("env:{k}");
        match k.as_str() {
            "LD_PRELOAD" => out.push(library("ld_preload", v, via)),
            "LD_AUDIT" => out.push(library("ld_audit", v, via)),
            "JAVA_TOOL_OPTIONS" | "_JAVA_OPTIONS" | "JDK_JAVA_OPTIONS" | "NODE_OPTIONS" => {
                scan_words(v.split_whitespace(), &via, &mut out);
            }
            "PYTHONBREAKPOINT" if !v.is_empty() && v != "0" => out.push(Switch {
                interface: "python_breakpoint",
                risk: None,
                via,
            }),
            "DOTNET_DiagnosticPorts" if !v.is_empty() => out.push(Switch {
                interface: "dotnet_diagnostics",
                risk: None,
                via,
            }),
            "DOTNET_EnableDiagnostics" if v == "1" => out.push(Switch {
                interface: "dotnet_diagnostics",
                risk: None,
                via,
            }),
            "CORECLR_ENABLE_PROFILING" if v == "1" => out.push(Switch {
                interface: "dotnet_profiler",
                risk: None,
                via,
            }),
            "CORECLR_PROFILER_PATH" if !v.is_empty() => {
                out.push(library("dotnet_profiler", v, via))
            }
            _ => {}
        }
    }
    out.dedup();
    out
}

/// JVM, Node and Python switches in a list of words (argv, or an options
/// variable split on whitespace).
fn scan_words<'a>(words: impl Iterator<Item = &'a str>, via: &str, out: &mut Vec<Switch>) {
    let mut prev = "";
    for w in words {
        let sw = |interface, risk| Switch {
            interface,
            risk,
            via: via.to_owned(),
        };
        if let Some(opts) = w
            .strip_prefix("-agentlib:jdwp=")
            .or_else(|| w.strip_prefix("-Xrunjdwp:"))
        {
            out.push(sw("jdwp", jdwp_risk(opts)));
        } else if let Some(jar) = w.strip_prefix("-javaagent:") {
            let path = jar.split('=').next().unwrap_or(jar);
            out.push(sw("java_agent", writable(path)));
        } else if let Some(lib) = w.strip_prefix("-agentpath:") {
            let path = lib.split('=').next().unwrap_or(lib);
            out.push(sw("java_native_agent", writable(path)));
        } else if w == "-XX:+EnableDynamicAgentLoading" {
            out.push(sw("java_dynamic_agents", None));
        } else if w.starts_with("-Dcom.sun.management.jmxremote") {
            let no_auth = w == "-Dcom.sun.management.jmxremote.authenticate=false";
            if let Some(s) = out.iter_mut().find(|s| s.interface == "jmx") {
                if no_auth {
                    s.risk = Some("no_auth");
                }
            } else {
                out.push(sw("jmx", no_auth.then_some("no_auth")));
            }
        } else if let Some(rest) = w.strip_prefix("--inspect") {
            // --inspect, --inspect-brk, --inspect-wait, each with =[HOST:]PORT.
            if rest.is_empty()
                || rest.starts_with('=')
                || rest.starts_with("-brk")
                || rest.starts_with("-wait")
            {
                let addr = rest.split_once('=').map_or("", |(_, a)| a);
                out.push(sw("node_inspector", any_host(addr)));
            }
        } else if prev == "-m" || w.starts_with("-m") && w.len() > 2 {
            let module = if prev == "-m" { w } else { &w[2..] };
            match module {
                "debugpy" => out.push(sw("debugpy", None)),
                "pdb" => out.push(sw("pdb", None)),
                "remote_pdb" | "rpdb" | "web_pdb" => out.push(sw("remote_pdb", None)),
                _ => {}
            }
        } else if (prev == "--listen" || prev == "--connect")
            && let Some(s) = out.iter_mut().rev().find(|s| s.interface == "debugpy")
        {
            s.risk = any_host(w);
        }
        prev = w;
    }
}

/// Switches that belong to the program itself: delve run headless and
/// gdbserver, each listening on an address.
fn program(name: &str, argv: &[String], out: &mut Vec<Switch>) {
    let via = || "argv".to_owned();
    if name == "dlv"
        && argv
            .iter()
            .any(|a| a == "--headless" || a == "--headless=true")
    {
        let listen = argv
            .iter()
            .find_map(|a| a.strip_prefix("--listen="))
            .or_else(|| {
                argv.iter()
                    .position(|a| a == "-l" || a == "--listen")
                    .and_then(|i| argv.get(i + 1))
                    .map(String::as_str)
            })
            .unwrap_or("127.0.0.1:0");
        out.push(Switch {
            interface: "delve",
            risk: any_host(listen),
            via: via(),
        });
    }
    if name == "gdbserver" {
        // gdbserver [OPTIONS] COMM PROG...: COMM is HOST:PORT, :PORT or a tty.
        let comm = argv
            .iter()
            .skip(1)
            .find(|a| !a.starts_with("--") && a.contains(':'));
        out.push(Switch {
            interface: "gdbserver",
            risk: comm.and_then(|c| any_host(c)),
            via: via(),
        });
    }
}

/// `address=*:5005`, `address=0.0.0.0:8000` listen everywhere; JDK 9+
/// takes a bare port for localhost.
fn jdwp_risk(opts: &str) -> Option<&'static str> {
    let listens = !opts.split(',').any(|o| o == "server=n");
    let addr = opts
        .split(',')
        .find_map(|o| o.strip_prefix("address="))
        .unwrap_or("");
    (listens && any_host_of(addr)).then_some("any_address")
}

fn any_host(addr: &str) -> Option<&'static str> {
    any_host_of(addr).then_some("any_address")
}

/// Whether `[HOST:]PORT` names every address: `*`, `0.0.0.0`, `[::]`, `::`
/// or an empty host before the colon (`:1234`).
fn any_host_of(addr: &str) -> bool {
    let Some((host, _port)) = addr.rsplit_once(':') else {
        return false;
    };
    matches!(host, "" | "*" | "0.0.0.0" | "[::]" | "::" | "[::0]")
}

/// A library-loading switch: `writable_dir` when any library it names
/// sits in a directory others may write (sticky /tmp included).
fn library(interface: &'static str, value: &str, via: String) -> Switch {
    let risk = value
        .split([':', ' '])
        .filter(|p| !p.is_empty())
        .find_map(writable);
    Switch {
        interface,
        risk,
        via,
    }
}

fn writable(path: &str) -> Option<&'static str> {
    let dir = Path::new(path).parent()?;
    let m = std::fs::metadata(dir).ok()?;
    (m.mode() & 0o002 != 0).then_some("writable_dir")
}

/// The runtime a program is, by its file name: `java`, `node`, `python`,
/// `dotnet`, `ruby`.
pub fn runtime_of(exe: &str) -> Option<&'static str> {
    let name = exe.rsplit('/').next().unwrap_or(exe);
    Some(match name {
        "java" => "java",
        "node" | "nodejs" => "node",
        "dotnet" => "dotnet",
        "ruby" => "ruby",
        n if n.starts_with("python") => "python",
        _ => return None,
    })
}

/// The interface a debug-trigger signal switches on in runtime `runtime`:
/// SIGQUIT makes a JVM start its attach listener (jcmd, jattach) and dump
/// its threads; SIGUSR1 turns Node's inspector on. Other runtimes take
/// SIGUSR1/SIGUSR2 as faulthandler or diagnostics hooks.
pub fn signal_interface(signal: i32, runtime: &str) -> Option<&'static str> {
    Some(match (signal, runtime) {
        (3, "java") => "jvm_attach",
        (10, "node") => "node_inspector",
        (3 | 10 | 12, _) => "runtime_signal",
        _ => return None,
    })
}

/// The interface a listening port serves: one the process was started
/// with (its switches), or the program's own (delve, gdbserver), or a
/// runtime's default port.
pub fn port_interface(switches: &[&'static str], exe: &str, port: u16) -> Option<&'static str> {
    const LISTENING: &[&str] = &[
        "jdwp",
        "jmx",
        "node_inspector",
        "debugpy",
        "remote_pdb",
        "delve",
        "gdbserver",
        "dotnet_diagnostics",
    ];
    if let Some(s) = switches.iter().find(|s| LISTENING.contains(s)) {
        return Some(s);
    }
    let name = exe.rsplit('/').next().unwrap_or(exe);
    match (name, runtime_of(exe), port) {
        ("dlv", _, _) => Some("delve"),
        ("gdbserver", _, _) => Some("gdbserver"),
        (_, Some("java"), 5005 | 8000) => Some("jdwp"),
        (_, Some("java"), 1099 | 9010) => Some("jmx"),
        (_, Some("node"), 9229) => Some("node_inspector"),
        (_, Some("python"), 5678) => Some("debugpy"),
        (_, _, 6060) => Some("pprof"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn names(v: &[Switch]) -> Vec<String> {
        v.iter().flat_map(Switch::policy_names).collect()
    }

    #[test]
    fn java_switches_from_argv_and_the_options_variables() {
        let s = detect(
            "/usr/lib/jvm/java-17/bin/java",
            &argv("java -agentlib:jdwp=transport=dt_socket,server=y,address=*:5005 -jar app.jar"),
            &[],
        );
        assert_eq!(names(&s), ["jdwp", "jdwp:any_address"]);
        let s = detect(
            "/usr/bin/java",
            &argv("java -Xrunjdwp:transport=dt_socket,server=y,address=5005 Main"),
            &[],
        );
        assert_eq!(names(&s), ["jdwp"], "a bare port is localhost");
        let s = detect(
            "/usr/bin/java",
            &argv("java Main"),
            &[(
                "JAVA_TOOL_OPTIONS".into(),
                "-javaagent:/opt/a.jar -Dcom.sun.management.jmxremote.port=9010 \
                 -Dcom.sun.management.jmxremote.authenticate=false"
                    .into(),
            )],
        );
        assert_eq!(names(&s), ["java_agent", "jmx", "jmx:no_auth"]);
        assert_eq!(s[0].via, "env:JAVA_TOOL_OPTIONS");
    }

    #[test]
    fn node_python_delve_gdbserver() {
        let n = |a: &str| names(&detect("/usr/bin/node", &argv(a), &[]));
        assert_eq!(n("node --inspect app.js"), ["node_inspector"]);
        assert_eq!(
            n("node --inspect=0.0.0.0:9229 app.js"),
            ["node_inspector", "node_inspector:any_address"]
        );
        assert_eq!(n("node --inspect-brk=9229 app.js"), ["node_inspector"]);
        assert!(n("node --inspector-foo app.js").is_empty());
        let env = [("NODE_OPTIONS".to_owned(), "--inspect=:9229".to_owned())];
        assert_eq!(
            names(&detect("/usr/bin/node", &argv("node app.js"), &env)),
            ["node_inspector", "node_inspector:any_address"]
        );
        let p = |a: &str| names(&detect("/usr/bin/python3", &argv(a), &[]));
        assert_eq!(
            p("python3 -m debugpy --listen 0.0.0.0:5678 app.py"),
            ["debugpy", "debugpy:any_address"]
        );
        assert_eq!(p("python3 -mpdb app.py"), ["pdb"]);
        assert!(p("python3 -m http.server").is_empty());
        assert_eq!(
            names(&detect(
                "/usr/bin/dlv",
                &argv("dlv exec --headless --listen=:2345 ./x"),
                &[]
            )),
            ["delve", "delve:any_address"]
        );
        assert_eq!(
            names(&detect(
                "/usr/bin/gdbserver",
                &argv("gdbserver :1234 ./x"),
                &[]
            )),
            ["gdbserver", "gdbserver:any_address"]
        );
        assert_eq!(
            names(&detect(
                "/usr/bin/gdbserver",
                &argv("gdbserver localhost:1234 ./x"),
                &[]
            )),
            ["gdbserver"]
        );
    }

    #[test]
    fn signals_and_ports_name_their_interface() {
        assert_eq!(
            runtime_of("/usr/lib/jvm/java-17-openjdk-amd64/bin/java"),
            Some("java")
        );
        assert_eq!(runtime_of("/usr/bin/python3.11"), Some("python"));
        assert_eq!(runtime_of("/bin/sleep"), None);
        assert_eq!(signal_interface(3, "java"), Some("jvm_attach"));
        assert_eq!(signal_interface(10, "node"), Some("node_inspector"));
        assert_eq!(signal_interface(12, "python"), Some("runtime_signal"));
        assert_eq!(signal_interface(9, "java"), None);
        assert_eq!(
            port_interface(&["jdwp"], "/usr/bin/java", 41234),
            Some("jdwp")
        );
        assert_eq!(port_interface(&[], "/usr/bin/java", 8080), None);
        assert_eq!(
            port_interface(&[], "/usr/bin/node", 9229),
            Some("node_inspector")
        );
        assert_eq!(
            port_interface(&[], "/usr/bin/gdbserver", 1234),
            Some("gdbserver")
        );
        assert_eq!(port_interface(&[], "/srv/app", 6060), Some("pprof"));
        assert_eq!(port_interface(&["ld_preload"], "/srv/app", 80), None);
    }

    #[test]
    fn library_injection_and_where_the_library_is() {
        let tmp = std::env::temp_dir().join("x.so");
        let env = [("LD_PRELOAD".to_owned(), tmp.display().to_string())];
        assert_eq!(
            names(&detect("/bin/ls", &argv("ls"), &env)),
            ["ld_preload", "ld_preload:writable_dir"]
        );
        let env = [("LD_PRELOAD".to_owned(), "/usr/lib/libfoo.so".to_owned())];
        assert_eq!(names(&detect("/bin/ls", &argv("ls"), &env)), ["ld_preload"]);
        let env = [(
            "LD_AUDIT".to_owned(),
            "/usr/lib/a.so:/dev/shm/b.so".to_owned(),
        )];
        assert_eq!(
            names(&detect("/bin/ls", &argv("ls"), &env)),
            ["ld_audit", "ld_audit:writable_dir"]
        );
        assert!(detect("/bin/ls", &argv("ls -l /tmp"), &[]).is_empty());
    }
}
