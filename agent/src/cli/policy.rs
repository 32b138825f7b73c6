//! `debugmon policy check` (every error with its file:line:column, and the
//! deny rules the kernel cannot enforce) and `debugmon policy explain`
//! (which rule decides a record, and why each other rule did not).

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
    /// Which rule decides the record in FILE, and why each other rule did not
    Explain {
        #[arg(long)]
        event: PathBuf,
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
        Command::Explain { event, policies } => policy_explain(&event, &policies),
    }
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
