//! The `altan-pay` command line: flags and exit codes here, all the work in the library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
