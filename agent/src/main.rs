//! `debugmon`: parses the command line and hands it to the subcommand's
//! module in `agent::cli`. Exit codes: 0 ok, 1 runtime error, 2 usage error.

use std::process::ExitCode;

use agent::cli::{self, Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => cli::run::main(args),
        Command::Verify(args) => {
            cli::logging::init();
            cli::verify::main(args)
        }
        Command::Tail(args) => {
            cli::logging::init();
            cli::tail::main(args)
        }
        Command::Review(args) => {
            cli::logging::init();
            cli::review::main(*args)
        }
        Command::Key { command } => cli::key::main(command),
        Command::Policy { command } => cli::policy::main(command),
        Command::Grant(args) => cli::grant::main(args),
        Command::Approve(args) => cli::approve::main(*args),
        Command::Config { command } => cli::config::main(command),
        Command::Status(args) => cli::status::main(args),
        Command::Inventory(args) => cli::inventory::main(args),
        Command::GenerateDocs(args) => cli::gendocs::main(args),
    }
}
