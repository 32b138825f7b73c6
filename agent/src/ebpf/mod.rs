//! Everything that touches the kernel's BPF interface: resolving kernel
//! layouts (BTF, tracefs), loading and attaching the programs.

pub mod btf;
pub mod loader;
pub mod tracefs;

pub use loader::{LoadError, Loaded, load_and_attach};
