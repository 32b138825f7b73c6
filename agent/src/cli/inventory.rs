//! `debugmon inventory`: the host's debug exposure now, as a table or
//! (`--json`) as the `detail` of an `inventory` snapshot record. Reads
//! /proc, /sys and the program directories itself: the agent need not
//! run. The debuggers are the classes of the policies in `--policies`.

use std::{path::PathBuf, process::ExitCode};

use super::print;
use crate::{
    inventory::{self, Sources, render},
    policy::PolicySet,
};

#[derive(clap::Args)]
pub struct Args {
    /// Policy directories whose `debuggers:` classes name debuggers and profilers
    #[arg(
        long = "policies",
        value_name = "DIR",
        default_values = crate::policy::DEFAULT_DIRS
    )]
    policies: Vec<PathBuf>,
    /// Print JSON (the `detail` of an `inventory` snapshot record)
    #[arg(long)]
    json: bool,
}

pub fn main(args: Args) -> ExitCode {
    let set = match PolicySet::load_dirs(&args.policies) {
        Ok(s) => s,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            return ExitCode::from(2);
        }
    };
    let path = std::env::var("PATH").ok();
    let inv = inventory::collect(&Sources::host(path.as_deref()), &set);
    if args.json {
        match serde_json::to_string_pretty(&inv) {
            Ok(j) => print(&j),
            Err(e) => {
                eprintln!("debugmon: {e}");
                ExitCode::from(1)
            }
        }
    } else {
        print(&render::table(&inv))
    }
}
