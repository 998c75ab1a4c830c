fn main() -> std::process::ExitCode {
    tee_verifier::cli::main()
}
