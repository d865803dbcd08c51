//! The `muster` binary: parse, run, map to an exit code. Everything else is in the library.

fn main() -> std::process::ExitCode {
    muster::cli::run(std::env::args_os().collect())
}
