//! Runs the real `debugmon run` for the bench: state under a temp dir,
//! metrics on a free loopback port, stdout read by a thread that does
//! nothing but copy bytes and stamp each read with CLOCK_BOOTTIME (parsing
//! happens after a run, so the reader never competes with the storm).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::storm::boottime_ns;

/// Bytes read from the agent's stdout, with the boottime at which each
/// read completed (`(end offset, ns)`), so a line's arrival is the stamp of
/// the read that brought its newline.
#[derive(Default)]
pub(crate) struct Output {
    pub bytes: Vec<u8>,
    pub reads: Vec<(usize, u64)>,
    pub eof: bool,
}

pub(crate) struct Agent {
    child: Child,
    out: Arc<Mutex<Output>>,
    reader: Option<JoinHandle<()>>,
    pub metrics: Option<String>,
}

/// CPU time (user + system) and memory of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcUsage {
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// VmRSS split: heap and stacks, mapped files, shared memory (the BPF
    /// ring buffer and maps mmapped into the agent count here or as file).
    pub anon_kib: u64,
    pub file_kib: u64,
    pub shmem_kib: u64,
}

/// Run time (ns) of every BPF program `pid` holds open, summed, from
/// `/proc/PID/fdinfo` (counted only while `kernel.bpf_stats_enabled` is 1:
/// see [`BpfStats`]). This is the agent's cost inside the traced
/// processes, which its own CPU time does not show.
pub(crate) fn bpf_run_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|info| info.contains("prog_type:"))
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("run_time_ns:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Sets the kernel's BPF run-time accounting for a part of the bench and
/// puts the previous setting back when dropped.
pub(crate) struct BpfStats {
    previous: Option<String>,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub(crate) fn enable() -> Self {
        Self::set(true)
    }

    /// Off for the throughput rounds, whatever an earlier run left: the
    /// accounting taxes every BPF program run on the host.
    pub(crate) fn disable() -> Self {
        Self::set(false)
    }

    fn set(on: bool) -> Self {
        let previous = std::fs::read_to_string(BPF_STATS).ok();
        let want = if on { "1" } else { "0" };
        if previous.as_deref().map(str::trim) != Some(want)
            && std::fs::write(BPF_STATS, want).is_err()
        {
            eprintln!("bench: cannot set {BPF_STATS} to {want}: BPF figures may be off");
        }
        Self { previous }
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(p) = &self.previous {
            let _ = std::fs::write(BPF_STATS, p.trim());
        }
    }
}

pub(crate) fn proc_usage(pid: u32) -> Result<ProcUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading stat")?;
    // Fields after the parenthesised comm (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("stat has no comm")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("status")?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcUsage {
        cpu_s: ticks as f64 / hz as f64,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        anon_kib: kib("RssAnon:"),
        file_kib: kib("RssFile:"),
        shmem_kib: kib("RssShmem:"),
    })
}

impl Agent {
    /// Starts `bin run` and waits for its `started` record.
    pub(crate) fn start(bin: &Path, state: &Path, extra: &[&str]) -> Result<Self> {
        std::fs::create_dir_all(state).context("creating the bench state dir")?;
        let log = std::fs::File::create(state.join("agent.log")).context("agent log")?;
        let policies = crate::shell::root().join("policies");
        let mut child = Command::new(bin)
            .arg("run")
            .args(extra)
            .env("RUST_LOG", "info")
            .env("DEBUGMON_METRICS_LISTEN", "127.0.0.1:0")
            .env("DEBUGMON_HOST_STATE_DIR", state)
            .env("DEBUGMON_HOST_KEY_PATH", state.join("host.key"))
            .env("DEBUGMON_SPOOL_DIR", state.join("spool"))
            .env("DEBUGMON_GRANTS_PATH", state.join("grants.json"))
            .env("DEBUGMON_CONTROL_SOCKET", state.join("control.sock"))
            .env("DEBUGMON_POLICY_DIRS", &policies)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut pipe = child.stdout.take().context("agent stdout")?;
        let out = Arc::new(Mutex::new(Output::default()));
        let o2 = Arc::clone(&out);
        let reader = std::thread::spawn(move || {
            realtime_reader();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let t = boottime_ns();
                        let mut o = o2.lock().expect("invariant: reader lock not poisoned");
                        o.bytes.extend_from_slice(&buf[..n]);
                        let end = o.bytes.len();
                        o.reads.push((end, t));
                    }
                }
            }
            o2.lock().expect("invariant: reader lock not poisoned").eof = true;
        });
        let mut agent = Self {
            child,
            out,
            reader: Some(reader),
            metrics: None,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let started = agent
                .records_where(|l| l.contains("\"started\""))
                .into_iter()
                .next();
            if let Some(r) = started {
                agent.metrics = r["detail"]["metrics"].as_str().map(str::to_owned);
                return Ok(agent);
            }
            if agent.out.lock().expect("invariant: lock").eof || Instant::now() > deadline {
                let log = std::fs::read_to_string(state.join("agent.log")).unwrap_or_default();
                let _ = agent.stop();
                bail!("debugmon did not start; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Parsed records whose raw line satisfies `cheap` (a substring test,
    /// so only the few interesting lines pay for JSON parsing).
    pub(crate) fn records_where(&self, cheap: impl Fn(&str) -> bool) -> Vec<Value> {
        let o = self.out.lock().expect("invariant: lock");
        o.bytes
            .split(|&b| b == b'\n')
            .filter_map(|l| std::str::from_utf8(l).ok())
            .filter(|l| cheap(l))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Runs `f` over every complete line and the boottime it arrived at.
    pub(crate) fn scan_lines(&self, mut f: impl FnMut(&str, u64)) {
        let o = self.out.lock().expect("invariant: lock");
        let mut start = 0;
        let mut r = 0;
        for (i, &b) in o.bytes.iter().enumerate() {
            if b != b'\n' {
                continue;
            }
            while r < o.reads.len() && o.reads[r].0 <= i {
                r += 1;
            }
            let t = o.reads.get(r).map_or(0, |x| x.1);
            if let Ok(l) = std::str::from_utf8(&o.bytes[start..i]) {
                f(l, t);
            }
            start = i + 1;
        }
    }

    /// Forgets what was read so far (between phases; bounds memory).
    pub(crate) fn clear(&self) {
        let mut o = self.out.lock().expect("invariant: lock");
        let keep = o
            .bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        o.bytes.drain(..keep);
        o.reads.clear();
        let len = o.bytes.len();
        if len > 0 {
            o.reads.push((len, boottime_ns()));
        }
    }

    /// Sums of `debugmon_events_total`, of the kernel drop counters and
    /// of the ring reads.
    pub(crate) fn scrape(&self) -> Result<Scrape> {
        let addr = self.metrics.as_deref().context("agent serves no metrics")?;
        let mut s = TcpStream::connect(addr).context("connecting to /metrics")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body).context("reading /metrics")?;
        let sum = |name: &str| -> u64 {
            body.lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .map(|v| v as u64)
                .sum()
        };
        Ok(Scrape {
            events: sum("debugmon_events_total"),
            lost: sum("debugmon_kernel_events_lost_total"),
            reads: sum("debugmon_ring_reads_total"),
        })
    }

    /// SIGTERM, wait for exit, join the reader; returns the `stopped` record.
    pub(crate) fn stop(mut self) -> Result<Option<Value>> {
        let pid = i32::try_from(self.child.id()).context("pid")?;
        // SAFETY: signals the child we started, by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                bail!("debugmon did not stop within 15 s of SIGTERM (killed)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        Ok(self
            .records_where(|l| l.contains("\"stopped\""))
            .into_iter()
            .next())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The agent's cumulative counters, from one scrape of `/metrics`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scrape {
    pub events: u64,
    pub lost: u64,
    pub reads: u64,
}

/// Runs the calling thread (the reader of the agent's stdout) at the
/// lowest real-time priority, so that a line's arrival time is when the
/// agent wrote it, not when the storm next let the reader have a CPU:
/// latency is the agent's figure, not the bench's. Warns and carries on
/// where the kernel refuses (the latency then includes the reader's wait).
fn realtime_reader() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid pointer.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        eprintln!(
            "bench: the stdout reader stays at normal priority ({}); latency includes its wait for a CPU",
            std::io::Error::last_os_error()
        );
    }
}
