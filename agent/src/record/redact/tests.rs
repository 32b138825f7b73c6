//! The redaction rules, table-driven: argv in, argv out, including look-alikes
//! that must stay as they are.

use super::*;

fn argv(words: &[&str]) -> Vec<String> {
    let r = Redactor::default();
    let mut v: Vec<String> = words.iter().map(|s| (*s).to_owned()).collect();
    r.redact_argv(&mut v);
    v
}

#[test]
fn argv_table() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["app", "password=hunter2"],
            &["app", "password=[REDACTED]"],
        ),
        (
            &["app", "--password", "hunter2", "x"],
            &["app", "--password", "[REDACTED]", "x"],
        ),
        (
            &["app", "--password=hunter2"],
            &["app", "--password=[REDACTED]"],
        ),
        (
            &["mysql", "-uroot", "-phunter2", "db"],
            &["mysql", "-uroot", "-p[REDACTED]", "db"],
        ),
        (
            &["/usr/bin/mysqldump", "-ps3cr3t"],
            &["/usr/bin/mysqldump", "-p[REDACTED]"],
        ),
        (&["app", "token=abc123"], &["app", "token=[REDACTED]"]),
        (
            &["gh", "--token", "ghp_abc"],
            &["gh", "--token", "[REDACTED]"],
        ),
        (&["app", "api_key=k1"], &["app", "api_key=[REDACTED]"]),
        (&["app", "--apikey=k2"], &["app", "--apikey=[REDACTED]"]),
        (&["aws", "AKIAIOSFODNN7EXAMPLE"], &["aws", "[REDACTED]"]),
        (
            &[
                "env",
                "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ],
            &["env", "AWS_SECRET_ACCESS_KEY=[REDACTED]"],
        ),
        (
            &["curl", "-H", "Authorization: Bearer eyJhbGciOi.x.y"],
            &["curl", "-H", "Authorization: Bearer [REDACTED]"],
        ),
        (
            &["psql", "postgres://alice:pw@db:5432/x"],
            &["psql", "postgres://alice:[REDACTED]@db:5432/x"],
        ),
        (
            &["curl", "https://h/x?token=abc&page=2"],
            &["curl", "https://h/x?token=[REDACTED]&page=2"],
        ),
        (
            &["app", "--client-secret", "cs"],
            &["app", "--client-secret", "[REDACTED]"],
        ),
        (
            &["curl", "-H", "X-Api-Key: k3"],
            &["curl", "-H", "X-Api-Key: [REDACTED]"],
        ),
        // Look-alikes that must stay.
        (
            &["app", "--password-file", "/x"],
            &["app", "--password-file", "/x"],
        ),
        (
            &["app", "--password-file=/x"],
            &["app", "--password-file=/x"],
        ),
        (&["ssh", "-p", "8080", "h"], &["ssh", "-p", "8080", "h"]),
        (&["nc", "-p8080"], &["nc", "-p8080"]),
        (&["passwd", "alice"], &["passwd", "alice"]),
        (
            &["app", "XAKIAIOSFODNN7EXAMPLE"],
            &["app", "XAKIAIOSFODNN7EXAMPLE"],
        ),
        (&["app", "tokens=5"], &["app", "tokens=5"]),
        (&["app", "PWD=/home/a"], &["app", "PWD=/home/a"]),
        (
            &["mysql", "-P", "3306", "-p"],
            &["mysql", "-P", "3306", "-p"],
        ),
        (
            &["mysql", "--password", "db"],
            &["mysql", "--password", "db"],
        ),
        (
            &["git", "clone", "https://host/repo.git"],
            &["git", "clone", "https://host/repo.git"],
        ),
        (&["--password", "x"], &["--password", "x"]),
    ];
    for (input, want) in cases {
        assert_eq!(argv(input), *want, "input {input:?}");
    }
}

#[test]
fn a_clean_argv_is_one_redaction_would_not_change() {
    let r = Redactor::default();
    let mut dirty = 0;
    let mut clean = 0;
    let corpus: Vec<Vec<&str>> = vec![
        vec!["app", "password=hunter2"],
        vec!["app", "--password", "hunter2"],
        vec!["mysql", "-phunter2"],
        vec!["mysql", "-p"],
        vec!["mysql", "--password", "db"],
        vec!["aws", "AKIAIOSFODNN7EXAMPLE"],
        vec!["curl", "-H", "Authorization: Bearer eyJhbGciOi.x.y"],
        vec!["psql", "postgres://alice:pw@db:5432/x"],
        vec!["app", "password=[REDACTED]"],
        vec!["app", "--password"],
        vec!["/bin/true", "storm-17"],
        vec!["ssh", "-p", "8080", "h"],
        vec!["app", "--password-file=/x"],
        vec!["git", "clone", "https://host/repo.git"],
        vec!["passwd", "alice"],
        vec![],
    ];
    for argv in &corpus {
        let mut owned: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        let changed = r.redact_argv(&mut owned);
        if r.argv_is_clean(argv) {
            clean += 1;
            assert_eq!(changed, 0, "called clean but redaction changed {argv:?}");
        } else if changed > 0 {
            dirty += 1;
        }
    }
    // Both verdicts occur: the check is neither always-true nor always-false.
    assert!(clean >= 5 && dirty >= 6, "clean {clean}, dirty {dirty}");
    assert!(r.argv_is_clean(&["/bin/true", "x"]));
    assert!(!r.argv_is_clean(&["app", "token=abc"]));
    assert!(!r.argv_is_clean(&["app", "--token", "abc"]));
    assert!(!r.argv_is_clean(&["mysqldump", "-pabc"]));
}

#[test]
fn env_strings() {
    let r = Redactor::default();
    for (input, want) in [
        ("PGPASSWORD=pw", "PGPASSWORD=[REDACTED]"),
        ("MYSQL_PWD=pw", "MYSQL_PWD=[REDACTED]"),
        ("GITHUB_TOKEN=ghp_x", "GITHUB_TOKEN=[REDACTED]"),
        ("HOME=/root", "HOME=/root"),
        ("PASSWORD_FILE=/run/secret", "PASSWORD_FILE=/run/secret"),
        (
            "a password=x b token=\"y z\"",
            "a password=[REDACTED] b token=[REDACTED]",
        ),
    ] {
        assert_eq!(r.redact_str(input), want, "input {input:?}");
    }
    assert!(matches!(r.redact_str("HOME=/root"), Cow::Borrowed(_)));
}

#[test]
fn redaction_is_idempotent_and_counted() {
    let r = Redactor::default();
    let mut v = vec![
        "app".to_owned(),
        "password=x".to_owned(),
        "--token".to_owned(),
        "t".to_owned(),
    ];
    assert_eq!(r.redact_argv(&mut v), 2);
    let once = v.clone();
    assert_eq!(r.redact_argv(&mut v), 0);
    assert_eq!(v, once);
}

#[test]
fn configured_patterns_flags_and_programs() {
    let cfg = RedactConfig {
        defaults: false,
        patterns: vec![
            r"pin:(?P<secret>\d+)".to_owned(),
            r"\bsk-[a-z0-9]{6,}".to_owned(),
        ],
        secret_flags: vec!["--pin".to_owned()],
        mysql_like: vec!["mydb".to_owned()],
    };
    let r = Redactor::new(&cfg).unwrap();
    let mut v: Vec<String> = [
        "mydb",
        "-pabc",
        "--pin",
        "1",
        "pin:42",
        "sk-abcdef12",
        "password=x",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    r.redact_argv(&mut v);
    assert_eq!(
        v,
        [
            "mydb",
            "-p[REDACTED]",
            "--pin",
            "[REDACTED]",
            "pin:[REDACTED]",
            "[REDACTED]",
            "password=x"
        ]
    );
    let bad = RedactConfig {
        patterns: vec!["(unclosed".to_owned()],
        ..RedactConfig::default()
    };
    let err = Redactor::new(&bad).unwrap_err();
    assert!(err.to_string().contains("(unclosed"), "{err}");
}

/// Issue 18: program flags, openssl pass phrase sources, curl users and
/// URLs with passwords; with the look-alikes each rule must leave alone.
#[test]
fn program_flags_and_url_table() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["openssl", "rsa", "-in", "k.pem", "-passin", "pass:hunter2"],
            &[
                "openssl",
                "rsa",
                "-in",
                "k.pem",
                "-passin",
                "pass:[REDACTED]",
            ],
        ),
        (
            &["/usr/bin/openssl", "pkcs12", "-passout", "pass:s3"],
            &["/usr/bin/openssl", "pkcs12", "-passout", "pass:[REDACTED]"],
        ),
        (
            &["openssl", "enc", "-aes256", "-pass", "pass:x y"],
            &["openssl", "enc", "-aes256", "-pass", "pass:[REDACTED]"],
        ),
        (
            &["openssl", "enc", "-k", "hunter2"],
            &["openssl", "enc", "-k", "[REDACTED]"],
        ),
        // The other pass phrase sources name where the secret is: kept.
        (
            &[
                "openssl",
                "rsa",
                "-passin",
                "env:KEYPASS",
                "-passout",
                "file:/run/p",
            ],
            &[
                "openssl",
                "rsa",
                "-passin",
                "env:KEYPASS",
                "-passout",
                "file:/run/p",
            ],
        ),
        (
            &["openssl", "rsa", "-passin", "fd:3", "-passout", "stdin"],
            &["openssl", "rsa", "-passin", "fd:3", "-passout", "stdin"],
        ),
        (
            &["curl", "-u", "alice:pw", "https://h/"],
            &["curl", "-u", "alice:[REDACTED]", "https://h/"],
        ),
        (
            &["curl", "--user", "alice:p:w", "https://h/"],
            &["curl", "--user", "alice:[REDACTED]", "https://h/"],
        ),
        (
            &["curl", "--user=alice:pw", "-ubob:pw2", "https://h/"],
            &[
                "curl",
                "--user=alice:[REDACTED]",
                "-ubob:[REDACTED]",
                "https://h/",
            ],
        ),
        (
            &["curl", "--proxy-user", "p:q", "-U", "r:s"],
            &["curl", "--proxy-user", "p:[REDACTED]", "-U", "r:[REDACTED]"],
        ),
        // A user without a password: curl prompts, nothing to hide.
        (
            &["curl", "-u", "alice", "https://h/"],
            &["curl", "-u", "alice", "https://h/"],
        ),
        (
            &["curl", "-s", "https://h/x"],
            &["curl", "-s", "https://h/x"],
        ),
        (
            &["sshpass", "-p", "hunter2", "ssh", "h"],
            &["sshpass", "-p", "[REDACTED]", "ssh", "h"],
        ),
        (
            &["sshpass", "-phunter2", "ssh", "-p", "22", "h"],
            &["sshpass", "-p[REDACTED]", "ssh", "-p", "22", "h"],
        ),
        // The wrapped command is an argv of its own.
        (
            &[
                "sshpass",
                "-f",
                "/run/pw",
                "mysql",
                "-phunter2",
                "-P",
                "3306",
            ],
            &[
                "sshpass",
                "-f",
                "/run/pw",
                "mysql",
                "-p[REDACTED]",
                "-P",
                "3306",
            ],
        ),
        (
            &["sshpass", "-p", "x", "--", "curl", "-u", "a:b"],
            &[
                "sshpass",
                "-p",
                "[REDACTED]",
                "--",
                "curl",
                "-u",
                "a:[REDACTED]",
            ],
        ),
        (
            &["redis-cli", "-h", "r", "-a", "hunter2", "ping"],
            &["redis-cli", "-h", "r", "-a", "[REDACTED]", "ping"],
        ),
        (
            &["mysql", "-uroot", "--password=hunter2", "-P", "3306"],
            &["mysql", "-uroot", "--password=[REDACTED]", "-P", "3306"],
        ),
        (
            &["mysql", "-P", "3306", "db"],
            &["mysql", "-P", "3306", "db"],
        ),
        // Program flags mean nothing for other programs.
        (&["ls", "-a", "x"], &["ls", "-a", "x"]),
        (&["tar", "-u", "a:b"], &["tar", "-u", "a:b"]),
        (&["openssl", "-k"], &["openssl", "-k"]),
        // URLs with a password, in any argument.
        (
            &["git", "clone", "https://bob:tok3n@git.example/r.git"],
            &["git", "clone", "https://bob:[REDACTED]@git.example/r.git"],
        ),
        (
            &["app", "--db=postgres://u:p@ss@db:5432/x"],
            &["app", "--db=postgres://u:[REDACTED]@db:5432/x"],
        ),
        (
            &["wget", "ftp://anon:x@h?q=1"],
            &["wget", "ftp://anon:[REDACTED]@h?q=1"],
        ),
        // URLs without one stay.
        (
            &["curl", "https://alice@h:8443/p"],
            &["curl", "https://alice@h:8443/p"],
        ),
        (
            &["curl", "https://h:8443/a@b"],
            &["curl", "https://h:8443/a@b"],
        ),
    ];
    for (input, want) in cases {
        assert_eq!(argv(input), *want, "input {input:?}");
        let r = Redactor::default();
        if input != want {
            assert!(!r.argv_is_clean(input), "{input:?} called clean");
        }
        // Redacting twice changes nothing more.
        let mut again: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(r.redact_argv(&mut again), 0, "{want:?} redacted again");
    }
}

/// A captured variable named like a secret loses its whole value (even
/// with spaces, which the key=value pattern stops at); others keep theirs
/// unless a pattern matches inside.
#[test]
fn env_values_by_name() {
    let r = Redactor::default();
    for (name, value, want) in [
        ("PGPASSWORD", "pw with spaces", "[REDACTED]"),
        ("MYSQL_PWD", "x", "[REDACTED]"),
        ("VAULT_TOKEN", "s.abc", "[REDACTED]"),
        ("AWS_SECRET_ACCESS_KEY", "k", "[REDACTED]"),
        ("PGPASSWORD", "", ""),
        (
            "JAVA_TOOL_OPTIONS",
            "-agentlib:jdwp=transport=dt_socket -Dpassword=x",
            "-agentlib:jdwp=transport=dt_socket -Dpassword=[REDACTED]",
        ),
        ("LD_PRELOAD", "/tmp/x.so", "/tmp/x.so"),
        ("PASSWORD_FILE", "/run/s", "/run/s"),
        ("TOKENS", "5", "5"),
    ] {
        assert_eq!(r.redact_env(name, value), want, "{name}={value}");
    }
    let off = Redactor::new(&RedactConfig {
        defaults: false,
        ..RedactConfig::default()
    })
    .unwrap();
    assert_eq!(off.redact_env("PGPASSWORD", "pw"), "pw");
}
