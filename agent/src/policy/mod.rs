//! The policy engine (schema and semantics: policies/README.md): YAML
//! policy files are loaded and compiled once into a [`PolicySet`]; each
//! event ([`PolicyEvent`]) is evaluated into a [`Ruling`] without
//! allocating. Also the pieces the CLI
//! and the pipeline call around it: [`check_paths`] (`policy check`),
//! [`explain`] (`policy explain`), [`human_line`] (the journal line of a
//! denial or alert), [`AlertFolder`] and [`PolicyWatcher`] (hot reload).
//!
//! - `yaml`: YAML with positions, and serde over it
//! - [`model`]: the file schema
//! - [`event`]: the evaluated event
//! - `index`, `compile`, `set`: patterns, rules and key index, built per load
//! - [`engine`]: evaluation and its semantics
//! - [`load`]: files, directories, hash, watcher
//! - [`access`]: read or full, the mode of a grant or a role
//! - [`grant`]: what a grant covers (the store is `crate::grants`)
//! - [`kernel`]: the deny rules the kernel can decide, in map form
//! - `tools`: the host's process tools, whose environment reads are
//!   inventory

pub mod access;
mod compile;
pub mod diag;
pub mod engine;
pub mod event;
pub mod explain;
pub mod fold;
pub mod grant;
pub mod human;
mod index;
#[cfg(test)]
mod index_tests;
pub mod kernel;
pub mod load;
pub mod model;
mod set;
#[cfg(test)]
mod tests;
mod timewin;
mod tools;
mod yaml;

pub use diag::{Diagnostic, Pos};
pub use engine::{EvalContext, GrantLookup, NoGrants, ReadOnly, Ruling};
pub use event::{EventClass, PolicyEvent};
pub use explain::{Explanation, explain};
pub use fold::{AlertFolder, FoldKey, Folded};
pub use human::{human_line, read_only_note};
pub use load::{DEFAULT_DIRS, PolicyWatcher, check_paths, overlay};
pub use model::{Action, Severity, Trigger};
pub use set::{PolicySet, RuleInfo};
