//! Library target of the eBPF crate. It exists so that `agent`'s build
//! dependency on this crate makes cargo rebuild the agent when it changes;
//! the programs themselves are the `agent` binary target (src/main.rs).
#![no_std]
