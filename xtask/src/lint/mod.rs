//! `cargo xtask lint`: the layout rules `cargo xtask test` enforces
//! beside fmt and clippy (docs/architecture.md says why each exists):
//!
//! - no module cycle in any crate, through `use`, paths or re-exports
//!   ([`modgraph`]);
//! - no source file over [`MAX_LINES`] lines, tests included;
//! - every source file opens with a `//!` comment saying what it is for;
//! - `main` and the agent's run loop stay short ([`SHORT_FNS`]);
//! - the module maps in the crate roots name exactly the modules declared
//!   there;
//! - nothing in the repository points at files outside it.

mod modgraph;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::shell::root;

/// Longest source file, tests included.
pub(crate) const MAX_LINES: usize = 600;

/// Crate roots whose module graphs must be acyclic.
const CRATE_ROOTS: &[&str] = &[
    "agent/src/lib.rs",
    "agent-common/src/lib.rs",
    "agent-ebpf/src/main.rs",
    "xtask/src/main.rs",
    "tests/integration/src/lib.rs",
];

/// Crate roots whose `//!` map must list exactly their modules.
const MODULE_MAPS: &[&str] = &["agent/src/lib.rs", "agent-ebpf/src/main.rs"];

/// (file, function, most lines): the entry points a reader starts from.
const SHORT_FNS: &[(&str, &str, usize)] = &[
    ("agent/src/main.rs", "main", 80),
    ("agent/src/runtime/mod.rs", "run", 80),
];

/// Directories whose `.rs` files are checked.
const SOURCE_DIRS: &[&str] = &[
    "agent",
    "agent-common",
    "agent-ebpf",
    "xtask",
    "tests",
    "fuzz",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let p = entry?.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

fn check_files(problems: &mut Vec<String>) -> Result<()> {
    let mut files = Vec::new();
    for d in SOURCE_DIRS {
        rust_files(&root().join(d), &mut files)?;
    }
    files.sort();
    for f in &files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", rel(f)))?;
        let lines = text.lines().count();
        if lines > MAX_LINES {
            problems.push(format!(
                "{}: {lines} lines, more than {MAX_LINES}: split it (tests go to a sibling tests.rs)",
                rel(f)
            ));
        }
        if !text.trim_start().starts_with("//!") {
            problems.push(format!(
                "{}: does not open with a `//!` comment saying what it is for",
                rel(f)
            ));
        }
    }
    Ok(())
}

fn check_short_fns(problems: &mut Vec<String>) -> Result<()> {
    for (file, name, max) in SHORT_FNS {
        let path = root().join(file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            problems.push(format!(
                "{file}: missing; fn {name} is where a reader starts"
            ));
            continue;
        };
        let ast = syn::parse_file(&text).with_context(|| format!("parsing {file}"))?;
        let f = ast.items.iter().find_map(|it| match it {
            syn::Item::Fn(f) if f.sig.ident == name => Some(f),
            _ => None,
        });
        let Some(f) = f else {
            problems.push(format!("{file}: no top-level fn `{name}`"));
            continue;
        };
        use syn::spanned::Spanned as _;
        let span = f.span();
        let lines = span.end().line - span.start().line + 1;
        if lines > *max {
            problems.push(format!(
                "{file}: fn {name} is {lines} lines, more than {max}: it is where a reader starts"
            ));
        }
    }
    Ok(())
}

/// Names written as [`name`] in a `//!` block.
fn doc_links(text: &str) -> Vec<String> {
    let doc: String = text
        .lines()
        .take_while(|l| l.starts_with("//!") || l.trim().is_empty() || l.starts_with("#!"))
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = doc.as_str();
    while let Some(i) = rest.find("[`") {
        rest = &rest[i + 2..];
        if let Some(j) = rest.find("`]") {
            out.push(rest[..j].to_owned());
            rest = &rest[j + 2..];
        }
    }
    out
}

fn check_module_maps(problems: &mut Vec<String>) -> Result<()> {
    for file in MODULE_MAPS {
        let text = std::fs::read_to_string(root().join(file))
            .with_context(|| format!("reading {file}"))?;
        let ast = syn::parse_file(&text).with_context(|| format!("parsing {file}"))?;
        let declared: Vec<String> = ast
            .items
            .iter()
            .filter_map(|it| match it {
                syn::Item::Mod(m) => Some(m.ident.to_string()),
                _ => None,
            })
            .collect();
        let linked = doc_links(&text);
        for m in &declared {
            if !linked.contains(m) {
                problems.push(format!(
                    "{file}: module `{m}` is missing from the module map (write [`{m}`] in the //! doc)"
                ));
            }
        }
        for l in &linked {
            let module_like = l.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if module_like && !declared.contains(l) {
                problems.push(format!(
                    "{file}: the module map names [`{l}`], which is not a module declared here"
                ));
            }
        }
    }
    Ok(())
}

/// Tracked text files must not send a reader outside the repository.
fn check_no_outside_references(problems: &mut Vec<String>) -> Result<()> {
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .context("git ls-files")?;
    for name in out.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let Ok(text) = std::fs::read_to_string(root().join(&name)) else {
            continue; // binary or removed in the work tree
        };
        for (i, line) in text.lines().enumerate() {
            // The pattern is split so that this file does not match itself.
            let outside = [
                concat!("../", "shared/"),
                concat!("DESIGN", ".md"),
                concat!("shared", "/TOOLCHAIN.md"),
                concat!("shared", "/STYLE.md"),
            ];
            if outside.iter().any(|p| line.contains(p)) {
                problems.push(format!(
                    "{name}:{}: points outside the repository: {}",
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn lint() -> Result<()> {
    let mut problems = Vec::new();
    for r in CRATE_ROOTS {
        let g = modgraph::Graph::read(&root().join(r)).with_context(|| format!("reading {r}"))?;
        problems.extend(g.problems.iter().cloned());
        for c in g.cycles() {
            problems.push(format!("{r}: {c}"));
        }
        if g.modules().count() == 0 {
            bail!("{r}: no modules read");
        }
    }
    check_files(&mut problems)?;
    check_short_fns(&mut problems)?;
    check_module_maps(&mut problems)?;
    check_no_outside_references(&mut problems)?;
    if problems.is_empty() {
        eprintln!(
            "xtask: lint: no module cycles, files and entry points within bounds, maps current"
        );
        return Ok(());
    }
    for p in &problems {
        eprintln!("lint: {p}");
    }
    bail!(
        "{} layout problem(s); see docs/architecture.md",
        problems.len()
    )
}
