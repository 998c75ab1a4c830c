//! Intel collateral from the command line: `tee-verifier collateral fetch`, the Intel source
//! flags `verify` shares with it, and `serve`'s collateral flags resolved into the service's
//! settings. Fetching is the collateral room's; this module only reads flags, the clock (through
//! the caller's `now`) and writes files.

use super::{now_or_clock, output, parse_hex_arg, read_input, HexArg, Verdict};
use crate::collateral::{
    CollateralConfig, CollateralError, CollateralFetcher, PckCa, QuoteTarget, RefreshPolicy,
    TcbUpdate, UrlAllowlist, GOOGLE_PRIVATE_CA_CONTENT, INTEL_PCS_URL,
};
use crate::error::ErrorKind;
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where Intel collateral is fetched from, for `verify` and `collateral fetch`.
#[derive(Args, Clone, Debug, Default)]
pub(super) struct IntelSourceArgs {
    /// Intel PCS or PCCS base URL (API v4) to fetch TDX collateral from: Intel's PCS is
    /// https://api.trustedservices.intel.com, a PCCS is e.g. https://pccs.internal:8081.
    #[arg(long, value_name = "URL")]
    pub pccs_url: Option<String>,
    /// Intel's update parameter: standard TCB evaluation data, or early (a TCB recovery's levels
    /// on disclosure day) [default: standard].
    #[arg(long, value_name = "early|standard", value_parser = parse_update)]
    pub collateral_update: Option<TcbUpdate>,
    /// Fetch the Intel root CA CRL here instead of from the PCCS (or, for the PCS, from the
    /// root certificate's CRL distribution point).
    #[arg(long, value_name = "URL")]
    pub root_ca_crl_url: Option<String>,
}

impl IntelSourceArgs {
    /// The fetcher's settings, with `default_url` when no --pccs-url is given.
    fn config(&self, default_url: &str) -> CollateralConfig {
        CollateralConfig {
            base_url: self
                .pccs_url
                .clone()
                .unwrap_or_else(|| default_url.to_owned()),
            update: self.collateral_update.unwrap_or_default(),
            root_ca_crl_url: self.root_ca_crl_url.clone(),
            ..CollateralConfig::default()
        }
    }
}

fn parse_update(text: &str) -> Result<TcbUpdate, String> {
    text.parse()
}

fn parse_refresh(text: &str) -> Result<RefreshPolicy, String> {
    text.parse()
}

/// `serve`'s collateral settings (its --help explains them).
#[derive(Args, Clone, Debug, Default)]
pub(super) struct ServeCollateralArgs {
    /// Intel PCS or PCCS base URL (API v4) that TDX collateral is fetched from for quotes sent
    /// without it [default: https://api.trustedservices.intel.com, Intel's PCS].
    #[arg(long, env = "TEE_VERIFIER_PCCS_URL", value_name = "URL")]
    pub pccs_url: Option<String>,
    /// Never fetch collateral: TDX evidence must carry it inline, and GCP AK chains must find
    /// their intermediates and CRLs in --gcp-ca-bundle (else collateral_missing).
    #[arg(long, env = "TEE_VERIFIER_NO_COLLATERAL_FETCH")]
    pub no_collateral_fetch: bool,
    /// Intel's update parameter: standard, or early (a TCB recovery's new levels on disclosure
    /// day) [default: standard].
    #[arg(long, env = "TEE_VERIFIER_COLLATERAL_UPDATE", value_name = "early|standard", value_parser = parse_update)]
    pub collateral_update: Option<TcbUpdate>,
    /// Also keep fetched collateral in this directory (created if missing) and read it back at
    /// start, so that a restart verifies with no network; files are re-verified before use.
    #[arg(long, env = "TEE_VERIFIER_COLLATERAL_CACHE", value_name = "DIR")]
    pub collateral_cache: Option<PathBuf>,
    /// Refresh a cached item this long before its nextUpdate (6h, 1d), or once this share of
    /// its window has passed (80%) [default: 80%].
    #[arg(long, env = "TEE_VERIFIER_COLLATERAL_REFRESH_BEFORE", value_name = "DURATION|PERCENT", value_parser = parse_refresh)]
    pub collateral_refresh_before: Option<RefreshPolicy>,
    /// Fetch the Intel root CA CRL here instead of from the PCCS (or, for the PCS, from the
    /// root certificate's CRL distribution point).
    #[arg(long, env = "TEE_VERIFIER_ROOT_CA_CRL_URL", value_name = "URL")]
    pub root_ca_crl_url: Option<String>,
    /// A URL prefix that CA certificates and CRLs named by certificates (a GCP AK chain's AIA
    /// caIssuers and CRL distribution points, fetched when --gcp-ca-bundle lacks them) may be
    /// fetched from; repeat for more; other URLs are never requested. Replaces the default,
    /// Google's private-CA content host (http://privateca-content-*.storage.googleapis.com/).
    #[arg(
        long = "ca-fetch-allow",
        env = "TEE_VERIFIER_CA_FETCH_ALLOW",
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    pub ca_fetch_allow: Vec<String>,
}

/// The settings of the `serve` config file that [`ServeCollateralArgs`] also names.
#[derive(Debug, Default)]
pub(super) struct CollateralFileKeys {
    pub pccs_url: Option<String>,
    pub no_collateral_fetch: bool,
    pub collateral_update: Option<String>,
    /// Already resolved against the file's directory.
    pub collateral_cache: Option<PathBuf>,
    pub collateral_refresh_before: Option<String>,
    pub root_ca_crl_url: Option<String>,
    pub ca_fetch_allow: Vec<String>,
}

/// The service's collateral settings: flags (and environment) first, then the file.
pub(super) fn resolve_serve(
    args: ServeCollateralArgs,
    file: CollateralFileKeys,
) -> anyhow::Result<(Option<CollateralConfig>, UrlAllowlist)> {
    let in_file = |key: &str, error: String| anyhow::anyhow!("{key} in the config file: {error}");
    let update = match args.collateral_update {
        Some(update) => Some(update),
        None => file
            .collateral_update
            .as_deref()
            .map(parse_update)
            .transpose()
            .map_err(|e| in_file("collateral_update", e))?,
    };
    let refresh = match args.collateral_refresh_before {
        Some(refresh) => Some(refresh),
        None => file
            .collateral_refresh_before
            .as_deref()
            .map(parse_refresh)
            .transpose()
            .map_err(|e| in_file("collateral_refresh_before", e))?,
    };
    let prefixes = if args.ca_fetch_allow.is_empty() {
        file.ca_fetch_allow
    } else {
        args.ca_fetch_allow
    };
    let ca_fetch_allow = if prefixes.is_empty() {
        UrlAllowlist::new(&[GOOGLE_PRIVATE_CA_CONTENT])
    } else {
        UrlAllowlist::new(&prefixes)
    }
    .context("--ca-fetch-allow")?;

    let pccs_url = args.pccs_url.or(file.pccs_url);
    let cache_dir = args.collateral_cache.or(file.collateral_cache);
    let root_ca_crl_url = args.root_ca_crl_url.or(file.root_ca_crl_url);
    if args.no_collateral_fetch || file.no_collateral_fetch {
        let fetch_settings = [
            ("--pccs-url", pccs_url.is_some()),
            ("--collateral-update", update.is_some()),
            ("--collateral-cache", cache_dir.is_some()),
            ("--collateral-refresh-before", refresh.is_some()),
            ("--root-ca-crl-url", root_ca_crl_url.is_some()),
            ("--ca-fetch-allow", !prefixes.is_empty()),
        ];
        if let Some((flag, _)) = fetch_settings.iter().find(|(_, given)| *given) {
            bail!("--no-collateral-fetch turns fetching off: {flag} has no effect with it");
        }
        return Ok((None, ca_fetch_allow));
    }
    let config = CollateralConfig {
        base_url: pccs_url.unwrap_or_else(|| INTEL_PCS_URL.to_owned()),
        update: update.unwrap_or_default(),
        root_ca_crl_url,
        refresh: refresh.unwrap_or_default(),
        cache_dir,
        ..CollateralConfig::default()
    };
    Ok((Some(config), ca_fetch_allow))
}

/// For `verify` without --collateral: the collateral of the TDX quote in `evidence`, fetched
/// and verified with it at `now`, if --pccs-url is given and the evidence is TDX. `Ok(Err(_))`
/// is a verdict (the quote or the fetched set does not verify); an unavailable fetch is an
/// error (exit 2).
pub(super) fn fetch_for_verify(
    source: &IntelSourceArgs,
    evidence: &[u8],
    now: u64,
) -> anyhow::Result<Result<Option<Vec<u8>>, CollateralError>> {
    let Some(url) = &source.pccs_url else {
        return Ok(Ok(None));
    };
    let input = crate::evidence::EvidenceInput {
        evidence,
        ..Default::default()
    };
    // Evidence that does not parse, or is not TDX, gets its verdict from the verifier.
    let Ok(Some(quote)) = crate::evidence::tdx_quote(&input) else {
        return Ok(Ok(None));
    };
    eprintln!("fetching TDX collateral from {url}");
    let fetcher = fetcher(source.config(url))?;
    let fetched = runtime()?.block_on(fetcher.collateral_for_quote(&quote, now));
    match fetched {
        Ok(set) => Ok(Ok(Some(set.json().to_vec()))),
        Err(error) => unavailable_or_verdict(error).map(Err),
    }
}

/// An unavailable fetch is an availability error (exit 2); anything else is a verdict.
fn unavailable_or_verdict(error: CollateralError) -> anyhow::Result<CollateralError> {
    if error.kind() == ErrorKind::CollateralUnavailable {
        bail!("{} ({})", error, error.kind());
    }
    Ok(error)
}

fn fetcher(config: CollateralConfig) -> anyhow::Result<CollateralFetcher> {
    CollateralFetcher::new(config, crate::tdx::TdxVerifier::new()).map_err(anyhow::Error::from)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Intel collateral for offline verification.
#[derive(Args)]
pub(super) struct CollateralCommand {
    #[command(subcommand)]
    command: CollateralSubcommand,
}

#[derive(Subcommand)]
enum CollateralSubcommand {
    Fetch(FetchArgs),
}

/// Fetch the Intel collateral a TDX quote needs (TCB info of its FMSPC, QE identity, PCK CRL of
/// its CA, root CA CRL) and write it as QuoteCollateralV3 JSON, dcap-qvl's format and exactly
/// what `verify --collateral` reads: everything an offline verification needs.
///
/// Given a QUOTE_FILE (raw quote or any dstack evidence), its PCK certificate names the FMSPC
/// and CA, and the set is verified with the quote before it is written. Given --fmspc and --ca
/// instead, the set is written unverified: whoever reads it verifies it. Fetches from Intel's
/// PCS unless --pccs-url names another PCS or a PCCS. Progress goes to stderr.
///
/// Examples:
///   tee-verifier collateral fetch -o collateral.json quote.bin
///   tee-verifier collateral fetch --pccs-url https://pccs.internal:8081 --fmspc 90C06F000000 --ca platform
///   tee-verifier verify --collateral collateral.json quote.bin
#[derive(Args)]
#[command(verbatim_doc_comment)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["fmspc", "quote"]))]
pub(super) struct FetchArgs {
    /// Print {"fmspc","ca","valid_until","verified","output"} (with "collateral" when there
    /// is no -o) instead of the bare collateral JSON.
    #[arg(long)]
    json: bool,
    /// Judge validity as of this time (unix seconds) instead of now; for archived quotes.
    #[arg(long, value_name = "UNIX_SECONDS")]
    now: Option<u64>,
    #[command(flatten)]
    source: IntelSourceArgs,
    /// The platform's FMSPC (6 bytes of hex), without a quote.
    #[arg(long, value_name = "HEX", value_parser = parse_hex_arg, requires = "ca", conflicts_with = "quote")]
    fmspc: Option<HexArg>,
    /// The Intel CA that issued the platform's PCK certificate, with --fmspc.
    #[arg(long, value_name = "processor|platform", value_parser = parse_ca, requires = "fmspc")]
    ca: Option<PckCa>,
    /// Write the collateral here (atomically) instead of to stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The quote (raw, or dstack evidence carrying one), or - for stdin.
    #[arg(value_name = "QUOTE_FILE")]
    quote: Option<PathBuf>,
}

fn parse_ca(text: &str) -> Result<PckCa, String> {
    text.parse()
}

/// `tee-verifier collateral …`.
pub(super) fn run(command: CollateralCommand) -> anyhow::Result<ExitCode> {
    match command.command {
        CollateralSubcommand::Fetch(args) => fetch(args),
    }
}

fn fetch(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let now = now_or_clock(args.now);
    let config = args.source.config(INTEL_PCS_URL);
    let url = config.base_url.clone();
    let fetcher = fetcher(config)?;
    let runtime = runtime()?;
    let (json, target, valid_until, verified) = match (&args.quote, &args.fmspc, args.ca) {
        (Some(path), _, _) => {
            let evidence = crate::encoding::decode_input(
                &read_input(path)?,
                crate::encoding::InputEncoding::Auto,
            )?;
            let input = crate::evidence::EvidenceInput {
                evidence: &evidence,
                ..Default::default()
            };
            let Some(quote) = crate::evidence::tdx_quote(&input)? else {
                bail!(
                    "{} is not TDX evidence: it needs no Intel collateral",
                    path.display()
                );
            };
            eprintln!("fetching the collateral of {} from {url}", path.display());
            match runtime.block_on(fetcher.collateral_for_quote(&quote, now)) {
                Ok(set) => (
                    set.json().to_vec(),
                    set.target(),
                    Some(set.valid_until()),
                    true,
                ),
                Err(error) => {
                    let error = unavailable_or_verdict(error)?;
                    if args.json {
                        output::print_json(&output::rejection_json(
                            error.kind().as_str(),
                            &error.to_string(),
                        ));
                    } else {
                        say!("REJECTED ({}): {error}", error.kind());
                    }
                    return Ok(Verdict::Rejected.into());
                }
            }
        }
        (None, Some(fmspc), Some(ca)) => {
            let fmspc = <[u8; 6]>::try_from(fmspc.0.as_slice())
                .map_err(|_| anyhow::anyhow!("--fmspc: {} bytes, 6 expected", fmspc.0.len()))?;
            let target = QuoteTarget { fmspc, ca };
            eprintln!(
                "fetching the collateral of FMSPC {} ({ca} CA) from {url}",
                crate::encoding::hex_upper(fmspc)
            );
            let json = runtime
                .block_on(fetcher.unverified_json(target, now))
                .map_err(|error| anyhow::anyhow!("{error} ({})", error.kind()))?;
            (json, target, None, false)
        }
        _ => bail!("give a QUOTE_FILE, or --fmspc HEX --ca processor|platform"),
    };
    if let Some(path) = &args.output {
        write_output(path, &json)?;
        eprintln!("wrote {} ({} bytes)", path.display(), json.len());
    }
    if args.json {
        let mut summary = serde_json::json!({
            "fmspc": crate::encoding::hex_upper(target.fmspc),
            "ca": target.ca.as_str(),
            "valid_until": valid_until,
            "verified": verified,
            "output": args.output.as_deref().map(Path::display).map(|p| p.to_string()),
        });
        if args.output.is_none() {
            summary["collateral"] = serde_json::from_slice(&json)?;
        }
        output::print_json(&summary);
    } else if args.output.is_none() {
        say!("{}", String::from_utf8_lossy(&json));
    }
    Ok(Verdict::Accepted.into())
}

/// Writes `bytes` to `path` through a temporary file beside it: a reader never sees half a file.
fn write_output(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = path.with_file_name(temp_name);
    crate::collateral::write_atomically(&temp, path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        collateral: ServeCollateralArgs,
    }

    fn resolve(
        args: &[&str],
        file: CollateralFileKeys,
    ) -> anyhow::Result<Option<CollateralConfig>> {
        let serve = Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))?;
        resolve_serve(serve.collateral, file).map(|(config, _)| config)
    }

    #[test]
    fn the_service_fetches_from_intels_pcs_by_default() {
        let config = resolve(&[], CollateralFileKeys::default())
            .unwrap()
            .unwrap();
        assert_eq!(config.base_url, INTEL_PCS_URL);
        assert_eq!(config.update, TcbUpdate::Standard);
        assert_eq!(config.refresh, RefreshPolicy::Fraction(0.8));
        assert_eq!((config.cache_dir, config.root_ca_crl_url), (None, None));
        let (_, allow) = resolve_serve(
            ServeCollateralArgs::default(),
            CollateralFileKeys::default(),
        )
        .unwrap();
        assert!(allow.allows_str("http://privateca-content-1a2b.storage.googleapis.com/x/ca.crt"));
        assert!(!allow.allows_str("http://example.com/ca.crt"));
    }

    #[test]
    fn flags_beat_the_file_and_conflicts_are_usage_errors() {
        let file = || CollateralFileKeys {
            pccs_url: Some("https://file.example".into()),
            collateral_update: Some("early".into()),
            collateral_cache: Some("/var/cache/x".into()),
            collateral_refresh_before: Some("6h".into()),
            ca_fetch_allow: vec!["http://file.example/".into()],
            ..CollateralFileKeys::default()
        };
        let config = resolve(
            &[
                "--pccs-url",
                "https://pccs.internal:8081",
                "--collateral-refresh-before",
                "90%",
                "--root-ca-crl-url",
                "http://crl.example/root.der",
            ],
            file(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.base_url, "https://pccs.internal:8081");
        assert_eq!(config.update, TcbUpdate::Early, "from the file");
        assert_eq!(config.cache_dir, Some(PathBuf::from("/var/cache/x")));
        assert_eq!(config.refresh, RefreshPolicy::Fraction(0.9));
        assert_eq!(
            config.root_ca_crl_url.as_deref(),
            Some("http://crl.example/root.der")
        );
        let serve = Serve::try_parse_from([
            "serve",
            "--ca-fetch-allow",
            "http://a.example/,http://b.example/p/",
        ])
        .unwrap();
        let (_, allow) = resolve_serve(serve.collateral, file()).unwrap();
        assert!(allow.allows_str("http://b.example/p/ca.crt"));
        assert!(
            !allow.allows_str("http://file.example/ca.crt"),
            "the flag replaces the file"
        );

        assert!(
            resolve(&["--no-collateral-fetch"], CollateralFileKeys::default())
                .unwrap()
                .is_none()
        );
        let conflict = resolve(
            &["--no-collateral-fetch", "--pccs-url", "http://x"],
            CollateralFileKeys::default(),
        )
        .unwrap_err();
        assert!(conflict.to_string().contains("--pccs-url"), "{conflict}");
        let bad = CollateralFileKeys {
            collateral_update: Some("soon".into()),
            ..CollateralFileKeys::default()
        };
        let error = resolve(&[], bad).unwrap_err().to_string();
        assert!(
            error.contains("collateral_update in the config file"),
            "{error}"
        );
        assert!(resolve(
            &["--collateral-update", "late"],
            CollateralFileKeys::default()
        )
        .is_err());
        assert!(resolve(
            &["--collateral-refresh-before", "soon"],
            CollateralFileKeys::default()
        )
        .is_err());
        let bad_prefix = Serve::try_parse_from(["serve", "--ca-fetch-allow", "ftp://x/"]).unwrap();
        assert!(resolve_serve(bad_prefix.collateral, CollateralFileKeys::default()).is_err());
    }

    #[test]
    fn verify_fetches_only_with_a_url_and_tdx_evidence() {
        let none = IntelSourceArgs::default();
        assert!(matches!(
            fetch_for_verify(&none, b"anything", 1),
            Ok(Ok(None))
        ));
        let nitro =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nitro/valid.cbor"))
                .unwrap();
        let source = IntelSourceArgs {
            // Nothing listens there: a request would fail, so none is made.
            pccs_url: Some("http://127.0.0.1:9".into()),
            ..IntelSourceArgs::default()
        };
        assert!(matches!(fetch_for_verify(&source, &nitro, 1), Ok(Ok(None))));
        assert!(matches!(
            fetch_for_verify(&source, b"\x00junk", 1),
            Ok(Ok(None))
        ));
    }
}
