//! The serial console of a test VM: each line is echoed with a prefix and
//! handed to the caller's parser until qemu exits. The time limit holds
//! even when the VM goes silent (a hung guest writes nothing, and a read
//! alone would wait forever): qemu is killed and the run fails.

use std::{
    io::{BufRead as _, BufReader},
    process::Child,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// Follows `child`'s stdout (piped) until it closes, then reaps `child`.
pub(crate) fn follow(
    child: &mut Child,
    prefix: &str,
    limit: Duration,
    mut on_line: impl FnMut(&str),
) -> Result<()> {
    let out = child.stdout.take().context("qemu stdout is not piped")?;
    let (tx, rx) = mpsc::channel::<std::io::Result<String>>();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => return,
                // The console carries terminal escapes and the odd
                // non-UTF-8 byte.
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\r', '\n']).to_owned();
                    if tx.send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(line)) => {
                println!("{prefix}| {line}");
                on_line(&line);
            }
            Ok(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e).context("reading the serial console");
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{prefix}: no end within {} min; qemu killed (see the console above)",
                    limit.as_secs() / 60
                );
            }
        }
    }
    let _ = reader.join();
    let _ = child.wait();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    fn spawn(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    #[test]
    fn every_line_reaches_the_parser_without_its_line_end() {
        let mut child = spawn("printf 'one\\r\\ntwo\\n\\377three'");
        let mut lines = Vec::new();
        follow(&mut child, "t", Duration::from_secs(60), |l| {
            lines.push(l.to_owned())
        })
        .unwrap();
        assert_eq!(lines, ["one", "two", "\u{fffd}three"]);
    }

    #[test]
    fn a_silent_guest_is_killed_at_the_limit() {
        let mut child = spawn("echo booting; exec sleep 600");
        let mut lines = 0;
        let err = follow(&mut child, "t", Duration::from_secs(1), |_| lines += 1).unwrap_err();
        assert!(err.to_string().contains("qemu killed"), "{err:#}");
        assert_eq!(lines, 1);
        assert!(child.try_wait().unwrap().is_some(), "the child was reaped");
    }
}
