//! Users the passwd file does not list get their names through NSS: a user
//! only in `libnss-extrausers`' files (/var/lib/extrausers), as a
//! `DynamicUser=` unit's user is only in nss-systemd and an LDAP user only
//! in SSSD, execs a program and the agent's record names them. The test
//! adds `extrausers` after `files` in /etc/nsswitch.conf (so no existing
//! name changes) and restores the file, and /var/lib/extrausers, on drop.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use integration_test::{Agent, nonce};

const NSSWITCH: &str = "/etc/nsswitch.conf";
const EXTRA_DIR: &str = "/var/lib/extrausers";
/// A uid and name no passwd file on a test machine uses.
const UID: u32 = 48_213;
const NAME: &str = "dmextra";

/// Puts back what the test changed, however it ends.
struct Restore {
    nsswitch: String,
    /// (file, its content before the test, or None when it did not exist).
    extra: Vec<(PathBuf, Option<String>)>,
    made_dir: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = fs::write(NSSWITCH, &self.nsswitch);
        for (path, before) in &self.extra {
            let _ = match before {
                Some(text) => fs::write(path, text),
                None => fs::remove_file(path),
            };
        }
        if self.made_dir {
            let _ = fs::remove_dir(EXTRA_DIR);
        }
    }
}

/// `passwd:` and `group:` lines with `extrausers` right after `files`.
fn with_extrausers(conf: &str) -> String {
    let mut out = String::new();
    for line in conf.lines() {
        let db = line.split(':').next().unwrap_or("").trim();
        if (db == "passwd" || db == "group") && !line.contains("extrausers") {
            let (head, sources) = line.split_once(':').unwrap();
            let mut words: Vec<&str> = sources.split_whitespace().collect();
            let at = words
                .iter()
                .position(|w| *w == "files")
                .map_or(0, |i| i + 1);
            words.insert(at, "extrausers");
            out.push_str(&format!("{head}: {}\n", words.join(" ")));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn install_extra_user() -> Restore {
    assert!(
        Path::new("/usr/lib/libnss_extrausers.so.2").exists()
            || Path::new("/usr/lib/x86_64-linux-gnu/libnss_extrausers.so.2").exists(),
        "libnss-extrausers is not installed (cargo xtask setup installs it)"
    );
    let nsswitch = fs::read_to_string(NSSWITCH).unwrap();
    let made_dir = !Path::new(EXTRA_DIR).exists();
    fs::create_dir_all(EXTRA_DIR).unwrap();
    let mut restore = Restore {
        nsswitch: nsswitch.clone(),
        extra: Vec::new(),
        made_dir,
    };
    for (file, line) in [
        (
            "passwd",
            format!("{NAME}:x:{UID}:{UID}:debugmon test:/nonexistent:/usr/sbin/nologin\n"),
        ),
        ("group", format!("{NAME}:x:{UID}:\n")),
    ] {
        let path = Path::new(EXTRA_DIR).join(file);
        let before = fs::read_to_string(&path).ok();
        restore.extra.push((path.clone(), before.clone()));
        fs::write(&path, before.unwrap_or_default() + &line).unwrap();
    }
    fs::write(NSSWITCH, with_extrausers(&nsswitch)).unwrap();
    restore
}

fn run_as_extra_user(tag: &str) {
    let ok = Command::new("setpriv")
        .args([
            &format!("--reuid={UID}"),
            &format!("--regid={UID}"),
            "--clear-groups",
            "/bin/echo",
            tag,
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "setpriv as uid {UID}");
}

#[test]
fn a_user_known_only_to_nss_is_named_in_records() {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        !passwd.lines().any(|l| l.starts_with(&format!("{NAME}:"))),
        "{NAME} must not be in /etc/passwd for this test to mean anything"
    );
    let _restore = install_extra_user();
    // The machine's own resolver sees the user, the passwd file does not.
    let getent = Command::new("getent")
        .args(["passwd", &UID.to_string()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&getent.stdout).starts_with(NAME),
        "getent passwd {UID}: {getent:?}"
    );

    let agent = Agent::start(&[]);
    // The first exec of a new uid may be recorded before its name is
    // resolved (lookups never hold up the event stream); the records that
    // follow carry it. Exec again until one does.
    let first = nonce("nss-first");
    run_as_extra_user(&first);
    let rec = agent.wait_for(
        "the first exec as the extra user",
        Duration::from_secs(30),
        |r| r["kind"] == "exec" && r["actor"]["argv"][1] == first.as_str(),
    );
    assert_eq!(rec["actor"]["uid"], UID, "{rec}");
    assert!(
        rec["actor"]["user"].is_null() || rec["actor"]["user"] == NAME,
        "a wrong name: {rec}"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let named = loop {
        let tag = nonce("nss");
        run_as_extra_user(&tag);
        let rec = agent.wait_for("an exec as the extra user", Duration::from_secs(30), |r| {
            r["kind"] == "exec" && r["actor"]["argv"][1] == tag.as_str()
        });
        if rec["actor"]["user"] == NAME {
            break rec;
        }
        assert!(Instant::now() < deadline, "never named: {rec}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(named["actor"]["uid"], UID);
    assert_eq!(named["actor"]["euid"], UID);
    assert_eq!(named["actor"]["euser"], NAME, "{named}");
    // Groups come through NSS too (getgrouplist), for policy's `groups:`.
    assert_eq!(
        named["actor"]["groups"],
        serde_json::json!([NAME]),
        "{named}"
    );
    agent.stop().assert_clean();
}
