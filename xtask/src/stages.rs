//! Wall time of each stage of `cargo xtask test`, printed when the run
//! ends or a stage fails, so a slow CI run shows where its time went.

use std::time::{Duration, Instant};

use anyhow::Result;

pub(crate) struct Stages {
    started: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Stages {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            done: Vec::new(),
        }
    }

    /// Runs one stage and notes its time; a failed stage prints the table.
    pub(crate) fn run<T>(
        &mut self,
        name: &'static str,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let t = Instant::now();
        let out = f();
        self.done.push((name, t.elapsed()));
        if out.is_err() {
            self.print();
        }
        out
    }

    pub(crate) fn print(&self) {
        eprintln!();
        eprintln!("xtask: stage times");
        for (name, d) in &self.done {
            eprintln!("  {:>7.1} s  {name}", d.as_secs_f64());
        }
        eprintln!("  {:>7.1} s  total", self.started.elapsed().as_secs_f64());
    }
}
