//! The GCP flags `verify` and `serve` share: the pinned root of Google's vTPM PKI, the CA bundle
//! of intermediates and CRLs the AK chains are built from, and whether CRLs are required.

use super::serve::read_root_certificate;
use crate::dstack::gcp_ak::{GcpAkVerifier, GcpCaBundle, MAX_CA_BUNDLE_LEN};
use anyhow::{bail, Context};
use clap::Args;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Google Cloud (dstack-gcp-tdx) attestations.
#[derive(Args, Clone, Debug, Default)]
pub(super) struct GcpArgs {
    /// Pin this root certificate (PEM or DER) for GCP vTPM attestation keys instead of the
    /// built-in Google "EK/AK CA Root".
    #[arg(long, env = "TEE_VERIFIER_GCP_ROOT", value_name = "FILE")]
    pub(super) gcp_root: Option<PathBuf>,
    /// PEM file of Google's "EK/AK CA Intermediate" certificates and CRLs (X509 CRL blocks):
    /// GCP evidence carries only the AK certificate. A CRL given is verified and enforced (a
    /// stale one rejects); get them from the AK's AIA caIssuers URL and their CRL distribution
    /// points.
    #[arg(long, env = "TEE_VERIFIER_GCP_CA_BUNDLE", value_name = "FILE")]
    pub(super) gcp_ca_bundle: Option<PathBuf>,
    /// Reject a GCP chain whose certificates name a CRL distribution point without a CRL of
    /// their issuer in --gcp-ca-bundle.
    #[arg(long, env = "TEE_VERIFIER_GCP_REQUIRE_CRL")]
    pub(super) gcp_require_crl: bool,
}

impl GcpArgs {
    /// The pinned root (DER), if another than Google's is asked for.
    pub(super) fn root_der(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.gcp_root
            .as_deref()
            .map(|path| {
                read_root_certificate(path)
                    .with_context(|| format!("--gcp-root {}", path.display()))
            })
            .transpose()
    }

    /// The CA bundle (empty without --gcp-ca-bundle).
    pub(super) fn bundle(&self) -> anyhow::Result<GcpCaBundle> {
        let mut bundle = match &self.gcp_ca_bundle {
            Some(path) => {
                read_bundle(path).with_context(|| format!("--gcp-ca-bundle {}", path.display()))?
            }
            None => GcpCaBundle::default(),
        };
        bundle.require_crl = self.gcp_require_crl;
        Ok(bundle)
    }

    /// The AK chain verifier these flags pin.
    pub(super) fn verifier(&self) -> anyhow::Result<(GcpAkVerifier, GcpCaBundle)> {
        let verifier = match self.root_der()? {
            Some(der) => GcpAkVerifier::with_root_der(&der),
            None => GcpAkVerifier::new(),
        };
        Ok((verifier, self.bundle()?))
    }
}

fn read_bundle(path: &Path) -> anyhow::Result<GcpCaBundle> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_CA_BUNDLE_LEN as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_CA_BUNDLE_LEN {
        bail!("larger than {MAX_CA_BUNDLE_LEN} bytes");
    }
    Ok(GcpCaBundle::from_pem(&bytes)?)
}
