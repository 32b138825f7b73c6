//! `debugmon policy check` (every error with its file:line:column, and the
//! deny rules the kernel cannot enforce), `debugmon policy list` (the rules
//! loaded, one line each) and `debugmon policy explain` (which rule decides
//! a record, and why each other rule did not).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Subcommand;

use crate::{
    policy::{self, EvalContext, NoGrants, PolicyEvent, PolicySet, kernel::kernel_policy},
    sys::users::UserDb,
};

#[derive(Subcommand)]
pub enum Command {
    /// Check files or directories; print file:line:column for every error (exit 2 on any)
    Check {
        /// Files or directories; a later one's file replaces an earlier one's of the same name
        #[arg(default_values = policy::DEFAULT_DIRS)]
        paths: Vec<PathBuf>,
    },
    /// List the rules in load order: name, action, severity, triggers, tags, file:line
    List {
        /// Files or directories; a later one's file replaces an earlier one's of the same name
        #[arg(default_values = policy::DEFAULT_DIRS)]
        paths: Vec<PathBuf>,
        /// One JSON object per rule instead of aligned columns
        #[arg(long)]
        json: bool,
    },
    /// Which rule decides the record in FILE, and why each other rule did not
    Explain {
        /// A record as JSON (from the file sink, `tail --json` or an alert)
        #[arg(long, value_name = "FILE")]
        event: PathBuf,
        /// Policy directories to load
        #[arg(
            long = "policies",
            value_name = "DIR",
            default_values = policy::DEFAULT_DIRS
        )]
        policies: Vec<PathBuf>,
    },
}

pub fn main(command: Command) -> ExitCode {
    match command {
        Command::Check { paths } => policy_check(&paths),
        Command::List { paths, json } => policy_list(&paths, json),
        Command::Explain { event, policies } => policy_explain(&event, &policies),
    }
}

/// `debugmon policy list [PATHS] [--json]`: exit 2 when the files do not load.
pub fn policy_list(paths: &[PathBuf], json: bool) -> ExitCode {
    match PolicySet::load_files(&expand(paths)) {
        Ok(set) => super::print(list_text(&set, json).trim_end()),
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            ExitCode::from(2)
        }
    }
}

/// The listing: aligned columns with a header, or JSON lines.
pub fn list_text(set: &PolicySet, json: bool) -> String {
    let rows: Vec<serde_json::Value> = set
        .rules()
        .map(|r| {
            let triggers: Vec<serde_json::Value> = set
                .rule_specs()
                .iter()
                .find(|s| s.name == r.name)
                .map(|s| {
                    s.on.iter()
                        .filter_map(|t| serde_json::to_value(t).ok())
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({
                "name": r.name,
                "action": r.action.as_str(),
                "severity": r.severity.as_str(),
                "triggers": triggers,
                "tags": r.tags,
                "file": format!("{}:{}", r.file.display(), r.line),
                "title": r.title,
            })
        })
        .collect();
    if json {
        return rows.iter().map(|r| format!("{r}\n")).collect();
    }
    let join = |v: &serde_json::Value| -> String {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into())
    };
    let header = ["NAME", "ACTION", "SEVERITY", "TRIGGERS", "TAGS", "FILE"].map(str::to_owned);
    let mut table = vec![header];
    for r in &rows {
        table.push([
            r["name"].as_str().unwrap_or_default().to_owned(),
            r["action"].as_str().unwrap_or_default().to_owned(),
            r["severity"].as_str().unwrap_or_default().to_owned(),
            join(&r["triggers"]),
            join(&r["tags"]),
            r["file"].as_str().unwrap_or_default().to_owned(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &table {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `debugmon policy check [PATHS]`: every error as `file:line:column: reason`,
/// then the deny rules the kernel cannot enforce (notes, not errors).
pub fn policy_check(paths: &[PathBuf]) -> ExitCode {
    let diags = policy::check_paths(paths);
    if !diags.is_empty() {
        for d in &diags {
            eprintln!("{d}");
        }
        eprintln!("{} error(s)", diags.len());
        return ExitCode::from(2);
    }
    match PolicySet::load_files(&expand(paths)) {
        Ok(set) => {
            let (k, notes) = kernel_policy(&set, &UserDb::new(Path::new("/etc")));
            for n in &notes {
                println!("note: {n}");
            }
            println!(
                "ok: {} rules ({} enforced in the kernel), hash {}",
                set.rule_count(),
                k.rules.len(),
                set.content_hash()
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            ExitCode::from(2)
        }
    }
}

/// Files for `paths`, overlaid by name as the agent loads its directories.
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    policy::overlay(paths, &mut Vec::new())
}

/// `debugmon policy explain --event FILE [--policies DIR...]`.
pub fn policy_explain(event: &Path, dirs: &[PathBuf]) -> ExitCode {
    let text = match std::fs::read_to_string(event) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("debugmon: cannot read {}: {e}", event.display());
            return ExitCode::from(2);
        }
    };
    let ev = match PolicyEvent::from_json(&text) {
        Ok(ev) => ev,
        Err(e) => {
            eprintln!("debugmon: {} is not a record: {e}", event.display());
            return ExitCode::from(2);
        }
    };
    let set = match PolicySet::load_dirs(dirs) {
        Ok(s) => s,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            return ExitCode::from(2);
        }
    };
    let ctx = EvalContext {
        now: chrono::Utc::now(),
        grants: &NoGrants,
    };
    print!("{}", policy::explain(&set, &ev, &ctx));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PolicySet {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies"));
        PolicySet::load_files(&expand(&[dir])).expect("the shipped policies load")
    }

    #[test]
    fn list_shows_every_rule_with_its_columns() {
        let set = shipped();
        let text = list_text(&set, false);
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        for col in ["NAME", "ACTION", "SEVERITY", "TRIGGERS", "TAGS", "FILE"] {
            assert!(header.contains(col), "{header}");
        }
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), set.rule_count(), "{text}");
        let sshd = rows
            .iter()
            .find(|l| l.starts_with("attach-to-sshd "))
            .expect("the shipped sshd rule");
        for want in [
            "deny",
            "critical",
            "ptrace_attach",
            "attack.t1055.008",
            ".yaml:",
        ] {
            assert!(sshd.contains(want), "{sshd}");
        }
    }

    #[test]
    fn list_json_has_one_object_per_rule() {
        let set = shipped();
        let text = list_text(&set, true);
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(rows.len(), set.rule_count());
        for r in &rows {
            for key in ["name", "action", "severity", "triggers", "tags", "file"] {
                assert!(r.get(key).is_some(), "{key} missing: {r}");
            }
            assert!(
                !r["triggers"].as_array().unwrap().is_empty(),
                "every rule has a trigger: {r}"
            );
        }
    }
}
