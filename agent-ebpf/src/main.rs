//! debugmon's kernel programs. Every event goes into one ring buffer;
//! every drop is counted per event kind; the agent's own process is
//! filtered out before any work is done. Field offsets of kernel structs
//! are not compiled in: the agent resolves them from the running kernel's
//! BTF and writes them into a read-only global at load.
//!
//! - [`task`]: reading kernel structs at the resolved offsets, safely
//! - [`ring`]: the ring buffer, wake-ups, drop counters, scratch space
//! - [`enforce`]: the decision maps and the one function that reads them
//! - [`probes`]: the programs, one module per hook family
//!
//! Each uses only the ones listed before it.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod enforce;
#[cfg(target_arch = "bpf")]
mod probes;
#[cfg(target_arch = "bpf")]
mod ring;
#[cfg(target_arch = "bpf")]
mod task;

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
