//! The contract between the kernel programs (`agent-ebpf`) and the agent:
//! `#[repr(C)]` wire types carried by the ring buffer, the read-only globals
//! the agent fills in at load time, and the names of the maps both sides use.
//!
//! - [`maps`]: map and global names, and their sizes
//! - [`event`]: the event header, exec, fork and exit
//! - [`access`]: one process acting on another, and what the kernel did
//! - [`enforce`]: the decision maps' keys and values
//! - [`offsets`]: kernel struct offsets resolved from BTF at load time
//! - [`fault`]: the kernel programs' counted failure sites
//!
//! Rules (house style): no `bool`, no pointers, no implicit padding; every
//! layout is pinned at compile time, field by field ([`layout!`]);
//! discriminants are explicit and never reused once retired. Everything is
//! re-exported here: both sides write `agent_common::Name`.
#![no_std]

/// Pins a wire type's layout at compile time: each field at the offset
/// right after the one before (no padding, no reordering), and the whole
/// type at `size` bytes. A field added, removed, moved or resized without
/// the other side knowing fails the build of both.
#[macro_export]
macro_rules! layout {
    ($t:ident, $size:expr; $($f:ident: $ft:ty),+ $(,)?) => {
        const _: () = {
            let mut at = 0usize;
            $(
                assert!(
                    ::core::mem::offset_of!($t, $f) == at,
                    concat!(stringify!($t), ".", stringify!($f), " is not where the wire contract puts it")
                );
                at += ::core::mem::size_of::<$ft>();
            )+
            assert!(
                at == ::core::mem::size_of::<$t>(),
                concat!(stringify!($t), " has padding after its last field")
            );
            assert!(
                ::core::mem::size_of::<$t>() == $size,
                concat!(stringify!($t), " changed size")
            );
        };
    };
}

pub mod access;
pub mod enforce;
pub mod event;
pub mod fault;
pub mod maps;
pub mod offsets;
#[cfg(feature = "user")]
mod pod;

pub use access::*;
pub use enforce::*;
pub use event::*;
pub use maps::*;
pub use offsets::*;
