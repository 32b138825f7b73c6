//! Everything that touches the kernel's BPF interface: resolving kernel
//! layouts ([`btf`], [`tracefs`]), loading and attaching the programs
//! ([`loader`]; [`probes`] says which program goes on which hook), and the
//! decision maps enforcement reads ([`enforce`]), and the programs' own
//! log of their failures ([`kernel_log`]).

pub mod btf;
pub mod enforce;
pub mod kernel_log;
pub mod loader;
pub mod probes;
pub mod tracefs;

pub use loader::{LoadError, Loaded, load_and_attach};
