//! The collateral items, their cache keys, and the validity window each one carries.
//!
//! Intel's four items: the TDX TCB Info of an FMSPC, the TDX QE Identity, the PCK CRL of a CA,
//! and the root CA CRL. Each is valid until the earliest `nextUpdate` (or certificate `notAfter`)
//! it contains; the cache never serves one outside that window.

use super::validity::Validity;
use std::fmt;
use std::str::FromStr;

/// What one cache entry holds; the `item` label of the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ItemKind {
    /// The signed TDX TCB Info of one FMSPC.
    TcbInfo,
    /// The signed identity of the TDX Quoting Enclave.
    QeIdentity,
    /// The CRL of the Intel PCK CA (processor or platform) that issued a PCK certificate.
    PckCrl,
    /// The CRL of the Intel SGX Root CA.
    RootCaCrl,
    /// A CA certificate fetched by its AIA caIssuers URL.
    CaIssuer,
    /// A CRL fetched by its CRL distribution point.
    CaCrl,
}

impl ItemKind {
    /// What a TDX quote needs, in the order the metrics list them.
    pub const INTEL: [ItemKind; 4] = [
        ItemKind::TcbInfo,
        ItemKind::QeIdentity,
        ItemKind::PckCrl,
        ItemKind::RootCaCrl,
    ];
    /// What the CA fetcher supplies.
    pub const CA: [ItemKind; 2] = [ItemKind::CaIssuer, ItemKind::CaCrl];

    /// The stable snake_case name, the `item` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::TcbInfo => "tcb_info",
            ItemKind::QeIdentity => "qe_identity",
            ItemKind::PckCrl => "pck_crl",
            ItemKind::RootCaCrl => "root_ca_crl",
            ItemKind::CaIssuer => "ca_issuer",
            ItemKind::CaCrl => "ca_crl",
        }
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Intel CA that issued a PCK certificate: the PCS `ca=` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PckCa {
    /// Intel SGX PCK Processor CA.
    Processor,
    /// Intel SGX PCK Platform CA.
    Platform,
}

impl PckCa {
    /// The `ca=` value: `processor` or `platform`.
    pub fn as_str(self) -> &'static str {
        match self {
            PckCa::Processor => "processor",
            PckCa::Platform => "platform",
        }
    }

    /// The CA named by an issuer common name (`Intel SGX PCK Processor CA`, `... Platform CA`),
    /// matched as dcap-qvl matches it; `None` if it names neither (dcap-qvl would guess).
    pub fn from_issuer_name(name: &str) -> Option<PckCa> {
        match (name.contains("Processor"), name.contains("Platform")) {
            (true, false) => Some(PckCa::Processor),
            (false, true) => Some(PckCa::Platform),
            _ => None,
        }
    }
}

impl FromStr for PckCa {
    type Err = String;

    fn from_str(text: &str) -> Result<PckCa, String> {
        match text.to_ascii_lowercase().as_str() {
            "processor" => Ok(PckCa::Processor),
            "platform" => Ok(PckCa::Platform),
            _ => Err(format!("{text:?} is not processor or platform")),
        }
    }
}

impl fmt::Display for PckCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Intel's `update` parameter: the TCB evaluation data set served. `early` has a TCB recovery's
/// new levels on disclosure day, `standard` about six weeks later .
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TcbUpdate {
    /// TCB evaluation data after its embargo period: what Intel serves by default.
    #[default]
    Standard,
    /// TCB evaluation data as soon as a TCB recovery is disclosed.
    Early,
}

impl TcbUpdate {
    /// The `update=` value: `standard` or `early`.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbUpdate::Standard => "standard",
            TcbUpdate::Early => "early",
        }
    }
}

impl FromStr for TcbUpdate {
    type Err = String;

    fn from_str(text: &str) -> Result<TcbUpdate, String> {
        match text.to_ascii_lowercase().as_str() {
            "standard" => Ok(TcbUpdate::Standard),
            "early" => Ok(TcbUpdate::Early),
            _ => Err(format!("{text:?} is not early or standard")),
        }
    }
}

/// The cache key of an Intel item. The TCB Info depends on the FMSPC only and the PCK CRL on
/// the CA only, so the set a quote of (FMSPC, CA) needs is these four keys; quotes of other
/// FMSPCs under the same CA share the PCK CRL, every quote shares the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ItemKey {
    TcbInfo { fmspc: [u8; 6] },
    QeIdentity,
    PckCrl { ca: PckCa },
    RootCaCrl,
}

impl ItemKey {
    pub(crate) fn kind(self) -> ItemKind {
        match self {
            ItemKey::TcbInfo { .. } => ItemKind::TcbInfo,
            ItemKey::QeIdentity => ItemKind::QeIdentity,
            ItemKey::PckCrl { .. } => ItemKind::PckCrl,
            ItemKey::RootCaCrl => ItemKind::RootCaCrl,
        }
    }

    /// What distinguishes entries of one kind (`90C06F000000`, `platform`, or empty).
    pub(crate) fn discriminator(self) -> String {
        match self {
            ItemKey::TcbInfo { fmspc } => crate::encoding::hex_upper(fmspc),
            ItemKey::PckCrl { ca } => ca.as_str().to_owned(),
            ItemKey::QeIdentity | ItemKey::RootCaCrl => String::new(),
        }
    }
}

/// What an item's response held, decoded and checked for shape, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Content {
    /// A TCB Info or QE Identity: the exact inner JSON text Intel signed, and the hex r‖s.
    Signed { text: String, signature_hex: String },
    /// A DER CRL.
    Crl { der: Vec<u8> },
}

/// The response as received, what the disk cache keeps so that a load decodes it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Raw {
    pub(crate) body: Vec<u8>,
    /// The URL-decoded issuer chain header (PEM), if the item has one.
    pub(crate) issuer_chain: Option<String>,
}

/// One decoded Intel item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) key: ItemKey,
    pub(crate) content: Content,
    pub(crate) validity: Validity,
    /// The `now` of the fetch (the caller's clock), for ages and refresh scheduling.
    pub(crate) fetched_at: u64,
    pub(crate) raw: Raw,
}

impl Item {
    /// The PEM issuer chain, empty for the root CA CRL.
    pub(crate) fn issuer_chain(&self) -> &str {
        self.raw.issuer_chain.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pck_ca_from_issuer_names() {
        assert_eq!(
            PckCa::from_issuer_name("Intel SGX PCK Processor CA"),
            Some(PckCa::Processor)
        );
        assert_eq!(
            PckCa::from_issuer_name("Intel SGX PCK Platform CA"),
            Some(PckCa::Platform)
        );
        assert_eq!(PckCa::from_issuer_name("Intel SGX Root CA"), None);
        assert_eq!(PckCa::from_issuer_name("Processor Platform"), None);
        assert_eq!("PLATFORM".parse::<PckCa>(), Ok(PckCa::Platform));
        assert!("root".parse::<PckCa>().is_err());
    }

    #[test]
    fn update_names() {
        assert_eq!("EARLY".parse::<TcbUpdate>(), Ok(TcbUpdate::Early));
        assert_eq!(TcbUpdate::default().as_str(), "standard");
        assert!("late".parse::<TcbUpdate>().is_err());
    }
}
