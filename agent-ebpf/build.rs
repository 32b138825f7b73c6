//! Rebuild the programs when `bpf-linker` changes: the eBPF build depends on
//! that binary, which cargo cannot otherwise know.

fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
