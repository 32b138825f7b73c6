//! Builds the eBPF programs (crate `agent-ebpf`) for the bpf target with the
//! nightly toolchain and places the object in OUT_DIR, where `ebpf::loader`
//! embeds it. `AYA_BUILD_SKIP=1` skips this for builds that never load
//! the programs (the fuzz targets): the embedded object is then empty, and
//! loading it fails with a parse error.
//!
//! The eBPF build has one target directory for the workspace
//! (`target/bpf`), not one per run of this script: cargo runs the script
//! anew for each profile and set of features (clippy, the debug and the
//! release build), and each of those runs compiled `core` and the programs
//! from scratch, about 45 s of both cores on these machines. Sharing it, a
//! second run is a no-op; two at once wait on cargo's lock of that
//! directory, which the builds that started them do not hold.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};

/// The eBPF crate's binary, which is the object the agent embeds.
const OBJECT: &str = "debugmon-ebpf";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let out = std::env::var_os("OUT_DIR").context("OUT_DIR")?;
    let out = Path::new(&out);
    if std::env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1") {
        std::fs::write(out.join(OBJECT), []).context("writing the empty eBPF object")?;
        return Ok(());
    }
    let meta = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = meta
        .packages
        .iter()
        .find(|p| p.name.as_str() == "agent-ebpf")
        .ok_or_else(|| anyhow!("agent-ebpf package not found in the workspace"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("agent-ebpf manifest has no parent directory"))?;
    // The programs are its binaries; its library (and agent-common under
    // it) is a build-dependency, so cargo also reruns this when they change.
    println!("cargo:rerun-if-changed={root}");
    let target_dir = meta.target_directory.join("bpf");
    let built = build(root.as_std_path(), target_dir.as_std_path())?;
    std::fs::copy(&built, out.join(OBJECT))
        .with_context(|| format!("copying {} into OUT_DIR", built.display()))?;
    Ok(())
}

/// `cargo build` of the eBPF crate's binaries for the bpf target, with its
/// messages passed on as build-script warnings; returns the object's path.
fn build(root: &Path, target_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let mut c = Command::new("rustup");
    c.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--package",
        "agent-ebpf",
    ])
    .args(["--bins", "--release", "--message-format=json", "--target"])
    .arg(target()?)
    .args(["-Z", "build-std=core", "--target-dir"])
    .arg(target_dir)
    .current_dir(root)
    // BTF in the object: the loader relocates field offsets with it.
    .env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!(
            "--cfg=bpf_target_arch=\"{}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf",
            arch()?
        ),
    )
    // Set for this script's own build (clippy-driver under clippy);
    // the nightly build of the programs must not inherit them.
    .env_remove("RUSTC")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .env_remove("RUSTC_WRAPPER")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .context("starting the eBPF build (rustup run nightly cargo)")?;
    let stderr = BufReader::new(child.stderr.take().context("piped stderr")?);
    let relay = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            println!("cargo:warning={line}");
        }
    });
    let mut object = None;
    let stdout = BufReader::new(child.stdout.take().context("piped stdout")?);
    for msg in cargo_metadata::Message::parse_stream(stdout) {
        match msg.context("reading the eBPF build's messages")? {
            cargo_metadata::Message::CompilerArtifact(a) if a.target.name == OBJECT => {
                object = a.executable.map(|e| e.into_std_path_buf());
            }
            cargo_metadata::Message::CompilerMessage(m) => {
                for line in m.message.rendered.unwrap_or_default().lines() {
                    println!("cargo:warning={line}");
                }
            }
            _ => {}
        }
    }
    let status = child.wait().context("waiting for the eBPF build")?;
    let _ = relay.join();
    if !status.success() {
        bail!("the eBPF build failed ({status}); its output is above as warnings");
    }
    object.ok_or_else(|| anyhow!("the eBPF build produced no {OBJECT} binary"))
}

/// The bpf target of the host's byte order: the programs run in its kernel.
fn target() -> anyhow::Result<&'static str> {
    match std::env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("little") => Ok("bpfel-unknown-none"),
        Ok("big") => Ok("bpfeb-unknown-none"),
        other => bail!("CARGO_CFG_TARGET_ENDIAN is {other:?}"),
    }
}

/// The host's architecture, for the programs' `bpf_target_arch` cfg (the
/// layout of `pt_regs` and the syscall ABI they read).
fn arch() -> anyhow::Result<String> {
    std::env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH")
}
