//! bpftrace as the second peer: one program on the `sched_process_exec`
//! tracepoint that prints every exec (pid, comm, file name), which is the
//! least a tracer can do to "see every exec". Its output goes to a thread
//! of ours that reads and counts the lines, as the agent's stdout does in
//! the debugmon rounds, so the printing is paid for and not blocked.
//! Started as our child and stopped by its pid.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

/// The program: an exec tracepoint that prints each exec.
pub(crate) const PROGRAM: &str = r#"tracepoint:sched:sched_process_exec { printf("%d %s %s\n", pid, comm, str(args->filename)); }"#;

pub(crate) struct Bpftrace {
    child: Child,
    lines: Arc<AtomicU64>,
    reader: Option<JoinHandle<()>>,
}

/// bpftrace finds tracepoints through tracefs; the agent mounts it when
/// it is missing, and so does this.
fn ensure_tracefs() -> Result<()> {
    let root = std::path::Path::new("/sys/kernel/tracing");
    if root.join("events").exists() {
        return Ok(());
    }
    let st = Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .status()
        .context("mounting tracefs")?;
    if !st.success() {
        bail!("mount -t tracefs nodev /sys/kernel/tracing failed ({st})");
    }
    Ok(())
}

impl Bpftrace {
    /// Says why when bpftrace is missing or cannot attach.
    pub(crate) fn start() -> Result<Self> {
        ensure_tracefs()?;
        let mut child = Command::new("bpftrace")
            .args(["-B", "full", "-e", PROGRAM])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting bpftrace (apt-get install bpftrace)")?;
        let out = child.stdout.take().context("bpftrace stdout")?;
        let lines = Arc::new(AtomicU64::new(0));
        let (attached_tx, attached_rx) = mpsc::channel();
        let counted = lines.clone();
        let reader = std::thread::spawn(move || {
            let mut attached = Some(attached_tx);
            for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
                if line.starts_with(b"Attaching ") {
                    if let Some(tx) = attached.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                counted.fetch_add(1, Relaxed);
            }
        });
        let mut me = Self {
            child,
            lines,
            reader: Some(reader),
        };
        if attached_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let mut err = String::new();
            if let Some(mut e) = me.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            bail!("bpftrace did not attach: {}", err.trim());
        }
        // bpftrace prints "Attaching" before the links are in place.
        std::thread::sleep(Duration::from_millis(500));
        Ok(me)
    }

    /// Execs printed so far.
    pub(crate) fn printed(&self) -> u64 {
        self.lines.load(Relaxed)
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signals the bpftrace we started, by its pid.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}
