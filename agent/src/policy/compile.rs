//! Turns parsed policy files into a [`PolicySet`]: merges roles and
//! debugger classes across files, validates every rule (globs, regexes,
//! roles, time windows, duplicate names) with the exact position of each
//! problem, and builds the indexes the engine evaluates with.

use std::{collections::HashMap, path::PathBuf};

use regex::Regex;

use super::{
    diag::Diagnostic,
    index::{FastMap, FieldIndex, IndexBuilder, Source},
    model::{DebuggerSpec, RoleSpec, RuleSpec},
    set::{self, Cond, Debuggers, Flag, IdField, PolicySet, Rule, Unless},
    timewin::{self, TimeWindow},
    yaml::{self, Node, NodeKind, Pos},
};

/// At most this many roles: membership is a bit mask per actor.
const MAX_ROLES: usize = 128;

/// A parsed file waiting to be compiled.
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
    pub(crate) root: Option<Node>,
}

struct Compiler {
    diags: Vec<Diagnostic>,
    builders: Vec<IndexBuilder>,
    roles: Vec<(String, RoleSpec)>,
    role_ids: HashMap<String, usize>,
    dbg_names: Vec<Box<str>>,
    dbg_exe: IndexBuilder,
    dbg_comm: IndexBuilder,
    dbg_exe_class: Vec<u16>,
    dbg_comm_class: Vec<u16>,
    rules: Vec<Rule>,
    rule_names: HashMap<String, (usize, Pos)>,
    /// The parsed rules and debugger lists, kept for the kernel compiler.
    specs: Vec<RuleSpec>,
    dbg_specs: Vec<(String, DebuggerSpec)>,
    tools: Vec<String>,
}

pub(crate) fn compile(files: &[SourceFile], hash: String) -> Result<PolicySet, Vec<Diagnostic>> {
    let mut c = Compiler {
        diags: Vec::new(),
        builders: Source::ALL
            .iter()
            .map(|s| IndexBuilder::new(s.path_like()))
            .collect(),
        roles: Vec::new(),
        role_ids: HashMap::new(),
        dbg_names: Vec::new(),
        dbg_exe: IndexBuilder::new(true),
        dbg_comm: IndexBuilder::new(false),
        dbg_exe_class: Vec::new(),
        dbg_comm_class: Vec::new(),
        rules: Vec::new(),
        rule_names: HashMap::new(),
        specs: Vec::new(),
        dbg_specs: Vec::new(),
        tools: Vec::new(),
    };
    let mut rule_nodes: Vec<(usize, &Node)> = Vec::new();
    // Roles and debuggers first: a rule may name a role from a later file.
    for (fi, f) in files.iter().enumerate() {
        let Some(root) = &f.root else { continue };
        let NodeKind::Map(entries) = &root.kind else {
            c.diag(
                fi,
                files,
                root.pos,
                "expected a mapping with `roles`, `rules`, `debuggers` and `process_tools`",
            );
            continue;
        };
        for (k, v) in entries {
            match k.as_str() {
                Some("roles") => c.roles(fi, files, v),
                Some("debuggers") => c.debuggers(fi, files, v),
                Some("process_tools") => c.tools(fi, files, v),
                Some("rules") => match &v.kind {
                    NodeKind::Seq(items) => rule_nodes.extend(items.iter().map(|n| (fi, n))),
                    _ if v.as_str() == Some("") => {}
                    _ => c.diag(fi, files, v.pos, "`rules` must be a list"),
                },
                _ => c.diag(
                    fi,
                    files,
                    k.pos,
                    format!(
                        "unknown field `{}`, expected one of `roles`, `rules`, `debuggers`, \
                         `process_tools`",
                        k.as_str().unwrap_or("?")
                    ),
                ),
            }
        }
    }
    for (fi, node) in rule_nodes {
        c.rule(fi, files, node);
    }
    c.finish(files, hash)
}

impl Compiler {
    fn diag(&mut self, fi: usize, files: &[SourceFile], pos: Pos, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::new(files[fi].path.clone(), Some(pos), msg));
    }

    fn roles(&mut self, fi: usize, files: &[SourceFile], node: &Node) {
        let NodeKind::Map(entries) = &node.kind else {
            if !node.as_str().is_some_and(str::is_empty) {
                self.diag(
                    fi,
                    files,
                    node.pos,
                    "`roles` must be a mapping of role names",
                );
            }
            return;
        };
        for (k, v) in entries {
            let name = k.as_str().unwrap_or_default().to_owned();
            match yaml::from_node::<RoleSpec>(v) {
                Err(e) => self.diag(fi, files, e.pos.unwrap_or(v.pos), e.message),
                Ok(spec) => match self.role_ids.get(&name) {
                    Some(&i) => {
                        let r = &mut self.roles[i].1;
                        r.users.extend(spec.users);
                        r.groups.extend(spec.groups);
                        match (r.access, spec.access) {
                            (Some(a), Some(b)) if a != b => self.diag(
                                fi,
                                files,
                                k.pos,
                                format!(
                                    "role {name} is declared with access {} elsewhere and {} here: \
                                     say it once",
                                    a.as_str(),
                                    b.as_str()
                                ),
                            ),
                            (None, b) => r.access = b,
                            _ => {}
                        }
                    }
                    None if self.roles.len() == MAX_ROLES => self.diag(
                        fi,
                        files,
                        k.pos,
                        format!("too many roles: at most {MAX_ROLES}"),
                    ),
                    None => {
                        self.role_ids.insert(name.clone(), self.roles.len());
                        self.roles.push((name, spec));
                    }
                },
            }
        }
    }

    fn debuggers(&mut self, fi: usize, files: &[SourceFile], node: &Node) {
        let NodeKind::Map(entries) = &node.kind else {
            self.diag(
                fi,
                files,
                node.pos,
                "`debuggers` must be a mapping of class names",
            );
            return;
        };
        for (k, v) in entries {
            let spec = match yaml::from_node::<DebuggerSpec>(v) {
                Ok(s) => s,
                Err(e) => {
                    self.diag(fi, files, e.pos.unwrap_or(v.pos), e.message);
                    continue;
                }
            };
            let name = k.as_str().unwrap_or_default();
            self.dbg_specs.push((name.to_owned(), spec.clone()));
            let class = match self.dbg_names.iter().position(|n| &**n == name) {
                Some(i) => i,
                None => {
                    self.dbg_names.push(name.into());
                    self.dbg_names.len() - 1
                }
            };
            let class = u16::try_from(class).expect("invariant: fewer than 65536 debuggers");
            for (field, list) in [("exe", &spec.exe), ("comm", &spec.comm)] {
                let list_node = v.find(&[field]);
                for (i, p) in list.iter().enumerate() {
                    let (b, classes) = if field == "exe" {
                        (&mut self.dbg_exe, &mut self.dbg_exe_class)
                    } else {
                        (&mut self.dbg_comm, &mut self.dbg_comm_class)
                    };
                    match b.add(p) {
                        // A pattern shared by two classes keeps the first.
                        Ok(id) if id as usize == classes.len() => classes.push(class),
                        Ok(_) => {}
                        Err(e) => {
                            let pos = list_node.item(i).map_or(list_node.pos, |n| n.pos);
                            self.diag(fi, files, pos, format!("bad glob `{p}`: {}", e.kind()));
                        }
                    }
                }
            }
        }
    }

    fn tools(&mut self, fi: usize, files: &[SourceFile], node: &Node) {
        let list = match yaml::from_node::<Vec<String>>(node) {
            Ok(l) => l,
            Err(e) => {
                self.diag(fi, files, e.pos.unwrap_or(node.pos), e.message);
                return;
            }
        };
        for (i, p) in list.into_iter().enumerate() {
            match super::tools::check(&p) {
                Ok(_) => self.tools.push(p),
                Err(e) => {
                    let pos = node.item(i).map_or(node.pos, |n| n.pos);
                    self.diag(fi, files, pos, e);
                }
            }
        }
    }

    /// Pattern ids for `list`, reporting each bad glob at its own item.
    fn patterns(
        &mut self,
        fi: usize,
        files: &[SourceFile],
        node: &Node,
        path: &[&str],
        source: Source,
        list: &[String],
    ) -> Box<[u32]> {
        let list_node = node.find(path);
        let mut ids = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            match self.builders[source as usize].add(p) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    let pos = list_node.item(i).map_or(list_node.pos, |n| n.pos);
                    let msg = format!("bad glob `{p}` in {}: {}", path.join("."), e.kind());
                    self.diag(fi, files, pos, msg);
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids.into_boxed_slice()
    }

    fn role_mask(
        &mut self,
        fi: usize,
        files: &[SourceFile],
        node: &Node,
        path: &[&str],
        names: &[String],
    ) -> u128 {
        let list_node = node.find(path);
        let mut mask = 0u128;
        for (i, n) in names.iter().enumerate() {
            match self.role_ids.get(n) {
                Some(&r) => mask |= 1 << r,
                None => {
                    let pos = list_node.item(i).map_or(list_node.pos, |n| n.pos);
                    self.diag(fi, files, pos, format!("unknown role `{n}`"));
                }
            }
        }
        mask
    }

    fn rule(&mut self, fi: usize, files: &[SourceFile], node: &Node) {
        let spec: RuleSpec = match yaml::from_node(node) {
            Ok(s) => s,
            Err(e) => {
                self.diag(fi, files, e.pos.unwrap_or(node.pos), e.message);
                return;
            }
        };
        let name_pos = node.find(&["name"]).pos;
        if spec.name.trim().is_empty() {
            self.diag(fi, files, name_pos, "rule name is empty");
        }
        if let Some(&(f0, p0)) = self.rule_names.get(&spec.name) {
            let first = format!("{}:{p0}", files[f0].path.display());
            let msg = format!(
                "duplicate rule name `{}` (first defined at {first})",
                spec.name
            );
            self.diag(fi, files, name_pos, msg);
            return;
        }
        self.rule_names.insert(spec.name.clone(), (fi, name_pos));
        if spec.on.is_empty() {
            self.diag(
                fi,
                files,
                node.find(&["on"]).pos,
                "rule has no `on` trigger",
            );
        }

        let mut conds = Vec::new();
        let (a, t, d) = (&spec.actor, &spec.target, &spec.detail);
        for (path, source, list) in [
            (["actor", "users"], Source::ActorUser, &a.users),
            (["actor", "groups"], Source::ActorGroup, &a.groups),
            (
                ["actor", "login_users"],
                Source::ActorLoginUser,
                &a.login_users,
            ),
            (["actor", "exe"], Source::ActorExe, &a.exe),
            (["actor", "comm"], Source::ActorComm, &a.comm),
            (["actor", "unit"], Source::ActorUnit, &a.unit),
            (["actor", "debugger"], Source::ActorDebugger, &a.debugger),
            (["target", "comm"], Source::TargetComm, &t.comm),
            (["target", "exe"], Source::TargetExe, &t.exe),
            (["target", "users"], Source::TargetUser, &t.users),
            (["target", "unit"], Source::TargetUnit, &t.unit),
            (
                ["detail", "ptrace_request"],
                Source::PtraceRequest,
                &d.ptrace_request,
            ),
            (["detail", "via"], Source::Via, &d.via),
            (["detail", "prog_type"], Source::ProgType, &d.prog_type),
            (
                ["detail", "debug_switches"],
                Source::DebugSwitch,
                &d.debug_switches,
            ),
            (["detail", "findings"], Source::Finding, &d.findings),
        ] {
            if !list.is_empty() {
                let ids = self.patterns(fi, files, node, &path, source, list);
                conds.push(Cond::Match(source, ids));
            }
        }
        for (field, ids) in [
            (IdField::Uid, &a.uids),
            (IdField::Euid, &a.euids),
            (IdField::Auid, &a.auids),
            (IdField::TargetUid, &t.uids),
        ] {
            if !ids.is_empty() {
                let mut v = ids.clone();
                v.sort_unstable();
                conds.push(Cond::Ids(field, v.into_boxed_slice()));
            }
        }
        for (flag, want) in [
            (Flag::Tty, a.tty),
            (Flag::Ssh, a.ssh),
            (Flag::ActorContainer, a.container),
            (Flag::TargetContainer, t.container),
            (Flag::OtherUser, t.other_user),
            (Flag::SameProcess, t.same_process),
            (Flag::LoginDiffers, a.login_differs),
        ] {
            if let Some(want) = want {
                conds.push(Cond::Flag(flag, want));
            }
        }
        if !a.roles.is_empty() {
            let mask = self.role_mask(fi, files, node, &["actor", "roles"], &a.roles);
            conds.push(Cond::Roles(mask));
        }
        if !a.argv_contains.is_empty() {
            let v = a.argv_contains.iter().map(|s| s.as_str().into()).collect();
            conds.push(Cond::ArgvContains(v));
        }
        if let Some(re) = &a.argv_regex {
            match Regex::new(re) {
                Ok(re) => conds.push(Cond::ArgvRegex(re)),
                Err(e) => {
                    let pos = node.find(&["actor", "argv_regex"]).pos;
                    self.diag(fi, files, pos, format!("bad regex: {}", regex_reason(&e)));
                }
            }
        }
        if let Some(w) = self.window(fi, files, node, &spec) {
            conds.push(Cond::Time(w));
        }
        conds.sort_by_key(Cond::cost);

        let u = &spec.unless;
        let unless = Unless {
            roles: self.role_mask(fi, files, node, &["unless", "role"], &u.role),
            users: self.patterns(
                fi,
                files,
                node,
                &["unless", "users"],
                Source::Person,
                &u.users,
            ),
            exe: self.patterns(
                fi,
                files,
                node,
                &["unless", "exe"],
                Source::ActorExe,
                &u.exe,
            ),
            comm: self.patterns(
                fi,
                files,
                node,
                &["unless", "comm"],
                Source::ActorComm,
                &u.comm,
            ),
            grant: u.grant,
        };
        self.specs.push(spec.clone());
        self.rules.push(Rule {
            name: spec.name.into(),
            title: spec.title.map(Into::into),
            description: spec.description.map(Into::into),
            action: spec.action,
            severity: spec.severity,
            tags: spec.tags.into_boxed_slice(),
            classes: spec.on.iter().fold(0, |m, t| m | t.classes()),
            conds: conds.into_boxed_slice(),
            unless,
            file: fi,
            pos: node.pos,
        });
    }

    fn window(
        &mut self,
        fi: usize,
        files: &[SourceFile],
        node: &Node,
        spec: &RuleSpec,
    ) -> Option<TimeWindow> {
        let cx = &spec.context;
        let mut ok = true;
        let minutes = cx.hours.as_deref().and_then(|h| {
            timewin::parse_hours(h)
                .map_err(|e| {
                    ok = false;
                    self.diag(fi, files, node.find(&["context", "hours"]).pos, e);
                })
                .ok()
        });
        let mut days = if cx.days.is_empty() { 0x7f } else { 0 };
        let days_node = node.find(&["context", "days"]);
        for (i, d) in cx.days.iter().enumerate() {
            match timewin::parse_days(d) {
                Ok(m) => days |= m,
                Err(e) => {
                    ok = false;
                    let pos = days_node.item(i).map_or(days_node.pos, |n| n.pos);
                    self.diag(fi, files, pos, e);
                }
            }
        }
        let zone = match timewin::parse_zone(cx.timezone.as_deref().unwrap_or("UTC")) {
            Ok(z) => z,
            Err(e) => {
                self.diag(fi, files, node.find(&["context", "timezone"]).pos, e);
                return None;
            }
        };
        (ok && (minutes.is_some() || days != 0x7f)).then_some(TimeWindow {
            minutes,
            days,
            zone,
        })
    }

    fn finish(mut self, files: &[SourceFile], hash: String) -> Result<PolicySet, Vec<Diagnostic>> {
        let build = |b: IndexBuilder| {
            b.build()
                .expect("invariant: every glob was validated on add")
        };
        let index: Vec<FieldIndex> = self.builders.drain(..).map(build).collect();
        let debuggers = Debuggers {
            names: self.dbg_names,
            exe: build(self.dbg_exe),
            comm: build(self.dbg_comm),
            exe_class: self.dbg_exe_class,
            comm_class: self.dbg_comm_class,
        };
        if !self.diags.is_empty() {
            return Err(self.diags);
        }
        let mut user_roles: FastMap<Box<str>, u128> = FastMap::default();
        let mut group_roles: FastMap<Box<str>, u128> = FastMap::default();
        let mut role_names = Vec::new();
        let mut read_roles = 0u128;
        for (i, (name, spec)) in self.roles.iter().enumerate() {
            role_names.push(name.as_str().into());
            if spec.access == Some(super::access::AccessMode::Read) {
                read_roles |= 1 << i;
            }
            for u in &spec.users {
                *user_roles.entry(u.as_str().into()).or_default() |= 1 << i;
            }
            for g in &spec.groups {
                *group_roles.entry(g.as_str().into()).or_default() |= 1 << i;
            }
        }
        let keys = set::Keys::build(&self.rules, &index);
        Ok(PolicySet {
            files: files.iter().map(|f| f.path.clone()).collect(),
            hash,
            rank: self.rules.iter().map(|r| (r.action, r.severity)).collect(),
            rules: self.rules,
            index,
            role_names,
            read_roles,
            user_roles,
            group_roles,
            debuggers,
            keys,
            specs: self.specs,
            role_specs: self.roles,
            debugger_specs: self.dbg_specs,
            tools: super::tools::ProcessTools::build(self.tools),
        })
    }
}

/// regex errors span several lines (pattern, caret, reason); a diagnostic
/// is one line, so keep the reason.
fn regex_reason(e: &regex::Error) -> String {
    let s = e.to_string();
    s.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| s.lines().next().unwrap_or_default())
        .to_owned()
}
