//! The `altan-pay` command line; all the work is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    altan_pay::cli::main()
}
