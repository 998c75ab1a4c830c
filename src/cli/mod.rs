//! The `tee-verifier` command line: subcommands, exit codes, and the one place besides the service
//! that reads the clock, the disk and stdin.
//!
//! Exit codes are part of the contract: 0 verified / allowed / registered, 1 rejected / denied /
//! not registered, 2 usage, I/O or availability errors (clap's own usage errors also exit 2).

/// `println!` that tolerates a closed stdout (see [`output::print_line`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::output::print_line(&format!($($arg)*))
    };
}

mod check;
mod collateral;
mod evidence;
mod explain;
mod gcp;
mod measure;
mod output;
mod pending;
mod propose;
mod registry;
mod serve;
mod source;
mod verify;

use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tee-verifier",
    version,
    about = "Verify TEE attestations (AWS Nitro Enclaves, Intel TDX + dstack) and answer dstack's on-chain allowlist",
    long_about = "Verify TEE attestations (AWS Nitro Enclaves, Intel TDX + dstack) and answer dstack's on-chain allowlist.\n\n\
        Exit codes: 0 = verified / allowed / registered, 1 = rejected / denied / not registered,\n\
        2 = usage, I/O or availability error. Add --json to any command for one machine-readable JSON object."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Verify(verify::VerifyArgs),
    Measure(measure::MeasureArgs),
    Check(check::CheckArgs),
    Explain(explain::ExplainArgs),
    Propose(propose::ProposeArgs),
    Registry(registry::RegistryCommand),
    Serve(serve::ServeArgs),
    Collateral(collateral::CollateralCommand),
}

/// Parses the command line, runs the command, and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Verify(args) => verify::run(args),
        Command::Measure(args) => measure::run(args),
        Command::Check(args) => check::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Propose(args) => propose::run(args),
        Command::Registry(command) => registry::run(command),
        Command::Serve(args) => serve::run(args),
        Command::Collateral(command) => collateral::run(command),
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("tee-verifier: {failure:#}");
            ExitCode::from(2)
        }
    }
}

/// What a command concluded, for the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The command's check passed: exit code 0.
    Accepted,
    /// The evidence or the authorization was refused: exit code 1 (usage and I/O errors exit 2).
    Rejected,
}

impl From<Verdict> for ExitCode {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Accepted => ExitCode::SUCCESS,
            Verdict::Rejected => ExitCode::from(1),
        }
    }
}

/// Reads a file, or stdin for `-`. Errors here are usage/I-O errors (exit 2).
fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_INPUT_LEN + 1)
            .read_to_end(&mut bytes)
            .context("reading stdin")?;
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        file.take(MAX_INPUT_LEN + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_INPUT_LEN,
        "{} is larger than {} bytes",
        path.display(),
        MAX_INPUT_LEN
    );
    Ok(bytes)
}

/// No attestation, event log or collateral we accept comes near this; it bounds memory on input.
const MAX_INPUT_LEN: u64 = 4 * 1024 * 1024;

/// `--now` if given, else the wall clock: the only place the CLI reads the time.
fn now_or_clock(now: Option<u64>) -> u64 {
    now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// Bytes given as hex on the command line (with or without 0x, any case). A newtype, because clap
/// would read a bare `Vec<u8>` as a list of numbers.
#[derive(Clone, Debug)]
pub struct HexArg(pub Vec<u8>);

fn parse_hex_arg(text: &str) -> Result<HexArg, String> {
    crate::encoding::parse_hex(text)
        .map(HexArg)
        .map_err(|e| e.to_string())
}

/// A duration as humantime reads it (`500ms`, `10s`, `1.5s`, `2m`, `1h 30m`, `1d`), or a bare
/// number of seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(std::time::Duration::from_secs)
            .map_err(|_| format!("{text:?} is too long"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration (e.g. 500ms, 10s, 2m): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration(&format!("{}h", u64::MAX)).is_err());
        assert!(parse_duration(&format!("{}0", u64::MAX)).is_err());
        assert!(parse_duration("").is_err());
        // humantime's forms, rejected before it: fractions, days, compounds, words.
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5d"), Ok(Duration::from_secs(5 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2 minutes"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5x").is_err());
    }
}
