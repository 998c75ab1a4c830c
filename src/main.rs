//! `tee-verifier`: the command line over the library (verify, measure, check, registry, serve).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    tee_verifier::cli::main()
}
