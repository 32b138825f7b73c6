//! The module graph of one crate, from its source: which module refers to
//! which, through `use` items, paths in code (`crate::a::B`, `super::x`)
//! and paths inside macro calls. A reference to a name that a module only
//! re-exports (`pub use`, or a private `use` that a child reaches through
//! `super::`) is followed to the module that defines it, so a re-export
//! cannot hide a cycle.
//!
//! An edge between two modules counts between the two siblings that
//! contain them below their nearest common ancestor: `policy::engine ->
//! grants::store` is an edge `policy -> grants` at the crate root. A
//! module using its own ancestor or descendant is not an edge (a folder
//! module owns its children). Any cycle among siblings is an error.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use proc_macro2::{TokenStream, TokenTree};
use syn::{
    Item, UseTree,
    visit::{self, Visit},
};

/// A module by its path from the crate root (`[]` is the root).
type ModPath = Vec<String>;

/// One reference, for the report.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) file: PathBuf,
    pub(crate) line: usize,
}

/// A crate's modules (each backed by a file), their aliases, and the
/// references between them.
pub(crate) struct Graph {
    files: BTreeMap<ModPath, PathBuf>,
    /// Per module: name -> path it stands for (from `use` items).
    aliases: HashMap<ModPath, HashMap<String, Vec<String>>>,
    /// (from, to) -> first place seen.
    edges: BTreeMap<(ModPath, ModPath), Site>,
    /// Layout problems met while reading (`#[path]` attributes).
    pub(crate) problems: Vec<String>,
}

/// A `use` tree flattened into (local name, full path) pairs.
fn flatten(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => {
            let name = n.ident.to_string();
            let mut full = prefix.clone();
            if name != "self" {
                full.push(name.clone());
            }
            let local = if name == "self" {
                prefix.last().cloned().unwrap_or_default()
            } else {
                name
            };
            out.push((local, full));
        }
        UseTree::Rename(r) => {
            let mut full = prefix.clone();
            if r.ident != "self" {
                full.push(r.ident.to_string());
            }
            out.push((r.rename.to_string(), full));
        }
        UseTree::Glob(_) => out.push(("*".into(), prefix.clone())),
        UseTree::Group(g) => {
            for t in &g.items {
                flatten(t, prefix, out);
            }
        }
    }
}

/// The file a `#[path = "..."]` attribute names.
fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// Where the children of the module in `file` live.
fn child_dir(file: &Path) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib" | "main") => dir,
        Some(stem) => dir.join(stem),
        None => dir,
    }
}

/// Collects the references of one file, keeping track of inline modules.
struct Refs<'a> {
    file: &'a Path,
    /// Logical module of the code being visited (file module + inline mods).
    scope: ModPath,
    found: Vec<(ModPath, Vec<String>, usize)>,
    uses: Vec<(ModPath, String, Vec<String>)>,
}

impl Refs<'_> {
    fn add(&mut self, segs: Vec<String>, line: usize) {
        if matches!(
            segs.first().map(String::as_str),
            Some("crate" | "super" | "self")
        ) {
            self.found.push((self.scope.clone(), segs, line));
        }
    }

    /// `crate :: a :: b` sequences in a macro's tokens.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let toks: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < toks.len() {
            if let TokenTree::Group(g) = &toks[i] {
                self.scan_tokens(g.stream());
            }
            if let TokenTree::Ident(id) = &toks[i]
                && (id == "crate" || id == "super")
            {
                let line = id.span().start().line;
                let mut segs = vec![id.to_string()];
                let mut j = i + 1;
                loop {
                    let colons = matches!((&toks.get(j), &toks.get(j + 1)),
                        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':');
                    match (colons, toks.get(j + 2)) {
                        (true, Some(TokenTree::Ident(n))) => {
                            segs.push(n.to_string());
                            j += 3;
                        }
                        _ => break,
                    }
                }
                if segs.len() > 1 {
                    self.add(segs, line);
                }
                i = j;
                continue;
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Refs<'_> {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut out = Vec::new();
        flatten(&u.tree, &mut Vec::new(), &mut out);
        let line = u.use_token.span.start().line;
        for (local, full) in out {
            self.uses.push((self.scope.clone(), local, full.clone()));
            self.add(full, line);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if let Some((_, items)) = &m.content {
            self.scope.push(m.ident.to_string());
            for it in items {
                self.visit_item(it);
            }
            self.scope.pop();
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(first) = p.segments.first() {
            self.add(segs, first.ident.span().start().line);
        }
        visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.scan_tokens(m.tokens.clone());
        visit::visit_macro(self, m);
    }
}

impl Graph {
    /// Reads the crate whose root file is `root` (`src/lib.rs`, `src/main.rs`).
    pub(crate) fn read(root: &Path) -> Result<Self> {
        let mut g = Graph {
            files: BTreeMap::new(),
            aliases: HashMap::new(),
            edges: BTreeMap::new(),
            problems: Vec::new(),
        };
        let mut raw = Vec::new();
        g.read_module(Vec::new(), root, &mut raw)?;
        for (from, segs, file, line) in raw {
            let Some(to) = g.resolve(&from, &segs) else {
                continue;
            };
            let file_mod = g.file_module(&from);
            let to = g.file_module(&to);
            if file_mod != to {
                g.edges.entry((file_mod, to)).or_insert(Site { file, line });
            }
        }
        Ok(g)
    }

    fn read_module(
        &mut self,
        path: ModPath,
        file: &Path,
        raw: &mut Vec<(ModPath, Vec<String>, PathBuf, usize)>,
    ) -> Result<()> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let ast = syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
        self.files.insert(path.clone(), file.to_path_buf());
        let mut refs = Refs {
            file,
            scope: path.clone(),
            found: Vec::new(),
            uses: Vec::new(),
        };
        refs.visit_file(&ast);
        let _ = refs.file;
        for (scope, local, full) in refs.uses {
            self.aliases.entry(scope).or_default().insert(local, full);
        }
        for (scope, segs, line) in refs.found {
            raw.push((scope, segs, file.to_path_buf(), line));
        }
        self.read_children(&path, file, &ast.items, raw)
    }

    fn read_children(
        &mut self,
        path: &ModPath,
        file: &Path,
        items: &[Item],
        raw: &mut Vec<(ModPath, Vec<String>, PathBuf, usize)>,
    ) -> Result<()> {
        let dir = child_dir(file);
        for item in items {
            let Item::Mod(m) = item else { continue };
            let path_attr = path_attr(&m.attrs);
            if path_attr.is_some() {
                self.problems.push(format!(
                    "{}: `#[path]` on mod {}: a module's file is where its name says",
                    file.display(),
                    m.ident
                ));
            }
            let mut child = path.clone();
            child.push(m.ident.to_string());
            match &m.content {
                // Inline: part of this file; its own inline children too.
                Some(_) => {}
                None => {
                    let name = m.ident.to_string();
                    let flat = dir.join(format!("{name}.rs"));
                    let nested = dir.join(&name).join("mod.rs");
                    let f = match &path_attr {
                        Some(p) => file.parent().unwrap_or(Path::new("")).join(p),
                        None if flat.exists() => flat,
                        None => nested,
                    };
                    if !f.exists() {
                        // A module only some targets have (e.g. bpf-only) is
                        // still a file; a missing one is the compiler's to report.
                        continue;
                    }
                    self.read_module(child, &f, raw)?;
                }
            }
        }
        Ok(())
    }

    /// The file-backed module that holds logical module `m`.
    fn file_module(&self, m: &ModPath) -> ModPath {
        let mut m = m.clone();
        while !self.files.contains_key(&m) && !m.is_empty() {
            m.pop();
        }
        m
    }

    /// The module a path used in `scope` ends in, following aliases.
    fn resolve(&self, scope: &ModPath, segs: &[String]) -> Option<ModPath> {
        self.resolve_depth(scope, segs, 0)
    }

    fn resolve_depth(&self, scope: &ModPath, segs: &[String], depth: u32) -> Option<ModPath> {
        if depth > 16 {
            return None;
        }
        let mut cur: ModPath;
        let mut rest = segs;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                cur = Vec::new();
                rest = &rest[1..];
            }
            Some("self") => {
                cur = scope.clone();
                rest = &rest[1..];
            }
            Some("super") => {
                cur = scope.clone();
                while rest.first().map(String::as_str) == Some("super") {
                    cur.pop();
                    rest = &rest[1..];
                }
            }
            // A 2018 path relative to the module: a child or a name it
            // imported; anything else names another crate.
            Some(first) => {
                let mut child = scope.clone();
                child.push(first.to_owned());
                let imported = self
                    .aliases
                    .get(scope)
                    .is_some_and(|a| a.contains_key(first));
                if !self.is_module(&child) && !imported {
                    return None;
                }
                cur = scope.clone();
            }
            None => return None,
        }
        for (i, seg) in rest.iter().enumerate() {
            let mut next = cur.clone();
            next.push(seg.clone());
            if self.is_module(&next) {
                cur = next;
                continue;
            }
            // A name brought into `cur` by a `use`: where it comes from.
            if let Some(full) = self.aliases.get(&cur).and_then(|a| a.get(seg)) {
                let mut target = full.clone();
                target.extend(rest[i + 1..].iter().cloned());
                if let Some(m) = self.resolve_depth(&cur, &target, depth + 1) {
                    return Some(m);
                }
            }
            break;
        }
        Some(cur)
    }

    fn is_module(&self, m: &ModPath) -> bool {
        self.files.contains_key(m)
            || self
                .files
                .keys()
                .any(|k| k.len() > m.len() && k[..m.len()] == m[..])
    }

    /// Every cycle among siblings, as lines of text.
    pub(crate) fn cycles(&self) -> Vec<String> {
        // parent -> (child -> children it refers to), with a sample site.
        let mut by_parent: BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, Site>>> =
            BTreeMap::new();
        for ((from, to), site) in &self.edges {
            let common = from
                .iter()
                .zip(to.iter())
                .take_while(|(a, b)| a == b)
                .count();
            if common == from.len() || common == to.len() {
                continue; // ancestor and descendant
            }
            by_parent
                .entry(from[..common].to_vec())
                .or_default()
                .entry(from[common].clone())
                .or_default()
                .entry(to[common].clone())
                .or_insert_with(|| site.clone());
        }
        let mut out = Vec::new();
        for (parent, g) in &by_parent {
            for scc in strongly_connected(g) {
                let names: Vec<&str> = scc.iter().map(String::as_str).collect();
                let at = if parent.is_empty() {
                    "the crate root".to_owned()
                } else {
                    parent.join("::")
                };
                let mut line = format!("cycle under {at}: {}", names.join(" <-> "));
                for a in &scc {
                    for (b, site) in g.get(a).into_iter().flatten() {
                        if scc.contains(b) {
                            line.push_str(&format!(
                                "\n    {a} -> {b} ({}:{})",
                                site.file.display(),
                                site.line
                            ));
                        }
                    }
                }
                out.push(line);
            }
        }
        out
    }

    /// Module paths and their files.
    pub(crate) fn modules(&self) -> impl Iterator<Item = (&ModPath, &PathBuf)> {
        self.files.iter()
    }
}

/// Tarjan's algorithm; components of more than one node, sorted.
fn strongly_connected(g: &BTreeMap<String, BTreeMap<String, Site>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        g: &'a BTreeMap<String, BTreeMap<String, Site>>,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        if let Some(succ) = s.g.get(v) {
            for w in succ.keys() {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).expect("invariant: visited");
                    *lv = (*lv).min(lw);
                } else if s.on.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).expect("invariant: visited");
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: Vec<&String> = g
        .keys()
        .chain(g.values().flat_map(BTreeMap::keys))
        .collect();
    for v in nodes {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests;
