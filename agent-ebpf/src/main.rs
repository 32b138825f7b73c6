//! debugmon's kernel programs: process lifecycle (exec, fork, exit) into one
//! ring buffer. Every drop is counted per event kind in `LOST`; the agent's
//! own process is filtered out here, before any work is done.
//!
//! Field offsets of kernel structs are not compiled in: the agent resolves
//! them from the running kernel's BTF and writes them into `OFFSETS` at load.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod enforce;
#[cfg(target_arch = "bpf")]
mod kernel;
#[cfg(target_arch = "bpf")]
mod probes;

// Host builds (clippy on the host, `cargo build --workspace`) only need this
// crate to type-check; the programs exist for the bpf target alone.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program that could reach a panic, so
    // this is never executed in a loaded program.
    unsafe { core::hint::unreachable_unchecked() }
}
