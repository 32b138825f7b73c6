//! `debugmon generate-docs --out DIR` (hidden): the man pages and shell
//! completions, generated from the same clap definitions `--help` prints,
//! so they cannot drift from the flags. `cargo xtask dist` runs it and
//! installs the output; a unit test checks every subcommand is in them.

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Cli;

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write man1/*.1 and completions/{debugmon.bash,_debugmon,debugmon.fish} into
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// The shells completions are written for, with their file names (the
/// names each shell's completion directory expects).
pub const COMPLETIONS: &[(Shell, &str)] = &[
    (Shell::Bash, "debugmon.bash"),
    (Shell::Zsh, "_debugmon"),
    (Shell::Fish, "debugmon.fish"),
];

/// Writes `out/man1/debugmon.1`, a page per subcommand
/// (`debugmon-policy-list.1`, ...) and `out/completions/*`; returns the
/// files written.
pub fn generate(out: &Path) -> io::Result<Vec<PathBuf>> {
    let man = out.join("man1");
    let comp = out.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&comp)?;
    clap_mangen::generate_to(Cli::command(), &man)?;
    let mut written: Vec<PathBuf> = fs::read_dir(&man)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    for (shell, name) in COMPLETIONS {
        let mut buf = Vec::new();
        clap_complete::generate(*shell, &mut Cli::command(), "debugmon", &mut buf);
        let path = comp.join(name);
        fs::write(&path, buf)?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

pub fn main(a: Args) -> ExitCode {
    match generate(&a.out) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "debugmon generate-docs: writing to {}: {e}",
                a.out.display()
            );
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every visible subcommand path, `["policy", "list"]` and so on.
    fn subcommands(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_owned());
            out.push(path.clone());
            subcommands(sub, &path, out);
        }
    }

    #[test]
    fn man_pages_and_completions_cover_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let mut all = Vec::new();
        subcommands(&Cli::command(), &[], &mut all);
        assert!(all.iter().any(|p| p == &["policy", "list"]), "{all:?}");
        assert!(!all.iter().any(|p| p[0] == "generate-docs"), "hidden");

        let main_page = fs::read_to_string(dir.path().join("man1/debugmon.1")).unwrap();
        for path in &all {
            let page = dir
                .path()
                .join(format!("man1/debugmon-{}.1", path.join("-")));
            let text =
                fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
            assert!(text.contains(".SH OPTIONS") || text.contains(".SH SUBCOMMANDS"));
            if path.len() == 1 {
                // The main page lists each subcommand under SUBCOMMANDS.
                assert!(
                    main_page.contains(&format!("debugmon\\-{}", path[0])),
                    "{path:?}"
                );
            }
        }
        for (_, name) in COMPLETIONS {
            let text = fs::read_to_string(dir.path().join("completions").join(name)).unwrap();
            for path in &all {
                let last = path.last().unwrap();
                assert!(text.contains(last.as_str()), "{name} lacks {path:?}");
            }
            // A flag only one subcommand has reaches the completions too.
            assert!(
                text.contains("subject-prefix") || text.contains("subject_prefix"),
                "{name}"
            );
        }
    }

    /// Every flag and positional argument of every subcommand has help
    /// text, so `--help`, the man pages and the completions explain it.
    #[test]
    fn every_argument_is_documented() {
        fn walk(cmd: &clap::Command, name: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() && name != "debugmon" {
                missing.push(format!("{name} (the subcommand)"));
            }
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{name} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{name} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "debugmon", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}
