//! `debugmon status`: the running agent's report, fetched from its
//! metrics endpoint (`--url`, or `metrics.listen` of the config).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use super::{load_config, print};
use crate::{error::error_chain, metrics::status};

#[derive(clap::Args)]
pub struct Args {
    /// Endpoint of the agent [default: http://<metrics.listen of the config>]
    #[arg(long)]
    url: Option<String>,
    /// Config file that names the endpoint when --url is not given
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the raw JSON report
    #[arg(long)]
    json: bool,
}

pub fn main(args: Args) -> ExitCode {
    let url = match args.url {
        Some(u) => u,
        None => match load_config(args.config.as_deref(), &[]) {
            Ok((cfg, _)) => match status::url_for(&cfg.metrics.listen) {
                Some(u) => u,
                None => {
                    eprintln!("debugmon: metrics.listen is empty (endpoint disabled); pass --url");
                    return ExitCode::from(2);
                }
            },
            Err(code) => return code,
        },
    };
    match status::fetch(&url, Duration::from_secs(5)) {
        Ok(r) if args.json => match serde_json::to_string_pretty(&r) {
            Ok(j) => print(&j),
            Err(e) => {
                eprintln!("debugmon: {e}");
                ExitCode::from(1)
            }
        },
        Ok(r) => print(&r.to_string()),
        Err(e) => {
            eprintln!("debugmon: status: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}
