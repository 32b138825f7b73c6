//! The process table: who is running, who their parents are, kept exact by
//! fork, exec and exit events and seeded from /proc at start.

pub mod procfs;
pub mod table;

pub use table::{Ancestor, ProcessEntry, ProcessTable, TableStats};
