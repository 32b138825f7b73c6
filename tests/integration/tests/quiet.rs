//! An admin's hour beside the agent, on the shipped policies: a package
//! installed and removed, a build, the process tools (as root and as a
//! user), the service and journal tools, log rotation, a crash. None of
//! it is debugging: it must raise no alert and make a bounded number of
//! records. Records are told apart from the rest of the host's by the
//! admin script's pid in their actor's ancestry.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use integration_test::{Agent, nonce};
use serde_json::Value;

/// The admin's session. `$W` is a scratch directory.
const SCRIPT: &str = r#"
set -u
cd "$W"
# A package: built here, installed and removed with dpkg.
mkdir -p pkg/DEBIAN pkg/usr/share/dm-quiet
printf 'Package: dm-quiet\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.invalid>\nDescription: quiet test\n' > pkg/DEBIAN/control
echo hello > pkg/usr/share/dm-quiet/hello
dpkg-deb --build pkg dm-quiet.deb >/dev/null
dpkg -i dm-quiet.deb >/dev/null
dpkg -r dm-quiet >/dev/null
# A build.
printf '#include <stdio.h>\nint main(void){puts("hi");return 0;}\n' > hello.c
printf 'hello: hello.c\n\tcc -O2 -o hello hello.c\n' > Makefile
make -s >/dev/null && ./hello >/dev/null
# Process tools, as root and as a user who may not read root's processes.
ps aux >/dev/null
ps -ef >/dev/null
ps e -e >/dev/null
top -b -n 1 >/dev/null
pgrep -a sh >/dev/null
pidof sh >/dev/null || true
pstree >/dev/null
w >/dev/null
setpriv --reuid=65534 --regid=65534 --clear-groups ps aux >/dev/null
# Service and journal tools (no systemd here: they fail, as on a container host).
systemctl status >/dev/null 2>&1 || true
journalctl -n 20 --no-pager >/dev/null 2>&1 || true
# Log rotation.
mkdir -p logs && for i in 1 2 3; do echo line >> logs/app.log; done
printf '%s/logs/app.log {\n  rotate 2\n  compress\n  missingok\n}\n' "$W" > rotate.conf
logrotate -f -s "$W/rotate.state" rotate.conf
# A crash (no core file: the limit is 0).
ulimit -c 0
sh -c 'kill -SEGV $$' 2>/dev/null || true
echo done
"#;

#[test]
fn an_admins_hour_raises_no_alert() {
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    let agent = Agent::start(&["--policies", policies, "--aggregate-window-secs", "1"]);
    let work = std::env::temp_dir().join(nonce("quiet"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).unwrap();
    let child = Command::new("/bin/bash")
        .arg("-c")
        .arg(SCRIPT)
        .env("W", &work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let admin = child.id();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("done"),
        "the admin script failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The barrier: every record of the script is out before it.
    agent.barrier();
    // One more window, for the aggregates of the last opens.
    std::thread::sleep(Duration::from_secs(2));
    agent.barrier();
    let stopped = agent.stop();
    stopped.assert_clean();
    let mine = |r: &Value| {
        r["actor"]["pid"] == admin
            || r["actor"]["ancestry"]
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p["pid"] == admin))
    };
    let records: Vec<&Value> = stopped.records.iter().filter(|r| mine(r)).collect();
    let execs = records.iter().filter(|r| r["kind"] == "exec").count();
    assert!(execs >= 20, "the script's execs were not seen: {execs}");
    let alerts: Vec<&&Value> = records
        .iter()
        .filter(|r| {
            r["decision"]["action"]
                .as_str()
                .is_some_and(|a| a != "allow")
        })
        .collect();
    assert!(alerts.is_empty(), "{} alerts: {alerts:#?}", alerts.len());
    // Every exec is a record; everything else (ps's environment reads,
    // the user's refused ones) comes to a handful.
    let others: Vec<&&Value> = records.iter().filter(|r| r["kind"] != "exec").collect();
    assert!(
        others.len() <= 20,
        "{} records besides the execs: {others:#?}",
        others.len()
    );
    eprintln!(
        "quiet: {execs} execs, {} other records, no alerts",
        others.len()
    );
    let inventory = records
        .iter()
        .filter(|r| r["detail"]["inventory"] == true)
        .count();
    assert!(
        inventory >= 1,
        "ps's environment reads were not seen as inventory: {others:#?}"
    );
    assert!(Path::new(policies).exists());
}
