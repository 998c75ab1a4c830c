//! Intel TDX quote v4/v5 parsing. All integers are little-endian. A 48-byte header is followed
//! by the TD report body (v4: always TD 1.0; v5: a `body_type: u16` and `body_size: u32` first),
//! then the signature data, whose QE report certification data (type 6) nests the PCK
//! credentials (usually type 5, a PEM chain). Every field is read by its declared length from
//! a bounds-checked cursor; bytes after the signature data are unsigned padding (real quotes
//! carry tens to thousands of them) and never read.

use super::error::TdxError;

/// Largest quote accepted. Real quotes are ≈5 KB plus a few KB of padding; dcap-qvl uses the
/// same bound for its variable-length fields.
pub const MAX_QUOTE_LEN: usize = 1 << 20;

/// Intel's QE vendor ID (`939A7233-F79C-4CA9-940A-0DB3957F0607`).
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

const TEE_TYPE_TDX: u32 = 0x81;
const ATTESTATION_KEY_TYPE_ECDSA_P256: u16 = 2;
const CERT_DATA_QE_REPORT: u16 = 6;
/// Size of an SGX report body (the QE report).
pub const QE_REPORT_LEN: usize = 384;

/// The 48-byte quote header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteHeader {
    /// Quote format version: 4 or 5.
    pub version: u16,
    /// Attestation key type; 2 (ECDSA P-256) is the only one accepted.
    pub attestation_key_type: u16,
    /// TEE type; 0x81 for TDX.
    pub tee_type: u32,
    /// Security version of the Quoting Enclave that produced the quote.
    pub qe_svn: u16,
    /// Security version of the Provisioning Certification Enclave.
    pub pce_svn: u16,
    /// QE vendor ID; Intel's is [`INTEL_QE_VENDOR_ID`].
    pub qe_vendor_id: [u8; 16],
    /// First 16 bytes: the QE ID of the platform.
    pub user_data: [u8; 20],
}

/// Which TD report layout the quote carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TdReportKind {
    /// TD 1.0 (584 bytes): every v4 quote, v5 body type 2.
    Td10,
    /// TD 1.5 (648 bytes): v5 body type 3.
    Td15,
    /// TD 1.5 "ex" (885 bytes): v5 body type 4.
    Td15Ex,
}

impl TdReportKind {
    /// Body length in bytes.
    pub const fn body_len(self) -> usize {
        match self {
            TdReportKind::Td10 => 584,
            TdReportKind::Td15 => 648,
            TdReportKind::Td15Ex => 885,
        }
    }

    /// The v5 `body_type` value.
    pub const fn body_type(self) -> u16 {
        match self {
            TdReportKind::Td10 => 2,
            TdReportKind::Td15 => 3,
            TdReportKind::Td15Ex => 4,
        }
    }

    fn from_body_type(body_type: u16) -> Option<Self> {
        [TdReportKind::Td10, TdReportKind::Td15, TdReportKind::Td15Ex]
            .into_iter()
            .find(|kind| kind.body_type() == body_type)
    }
}

/// The fields a TD 1.5 "ex" report (`sgx_report2_body_v1_5_ex_t`) adds after MRSERVICETD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Td15ExFields {
    /// VM identifier within the TD.
    pub vm_id: u8,
    /// TD_ID (32 bytes).
    pub td_id: [u8; 32],
    /// Device information (48 bytes).
    pub dev_info: [u8; 48],
    /// SERVTD_HASH the TD was launched with.
    pub init_service_td_hash: [u8; 48],
    /// Service TD attributes at launch.
    pub init_service_td_attributes: [u8; 8],
    /// CPU SVN at TD launch.
    pub init_cpu_svn: [u8; 16],
    /// TEE TCB SVN at TD launch.
    pub init_tee_tcb_svn: [u8; 16],
    /// FMSPC at TD launch (12 bytes as laid out in the report).
    pub init_tee_fmspc: [u8; 12],
    /// Current SERVTD_HASH.
    pub cur_service_td_hash: [u8; 48],
    /// Current service TD attributes.
    pub cur_service_td_attributes: [u8; 8],
}

/// The TD report body: what the TD measured and asked to be attested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdReport {
    /// Which layout the body was read with.
    pub kind: TdReportKind,
    /// TEE_TCB_SVN: the TDX module's TCB SVN components at launch, appraised against the TCB info.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM: SHA-384 of the TDX module.
    pub mr_seam: [u8; 48],
    /// MRSIGNERSEAM: signer of the TDX module (all zero for Intel's).
    pub mr_signer_seam: [u8; 48],
    /// SEAM attributes (all zero today).
    pub seam_attributes: [u8; 8],
    /// TDATTRIBUTES, little-endian bit field; the [`super::TdxPolicy`] refuses debug and other
    /// unsafe bits.
    pub td_attributes: [u8; 8],
    /// XFAM: the extended CPU features the TD may use.
    pub xfam: [u8; 8],
    /// MRTD: SHA-384 of the initial TD contents (the virtual firmware).
    pub mr_td: [u8; 48],
    /// MRCONFIGID: software-defined configuration ID, set by the host at launch.
    pub mr_config_id: [u8; 48],
    /// MROWNER: software-defined owner ID.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG: software-defined owner configuration.
    pub mr_owner_config: [u8; 48],
    /// RTMR0..3, the runtime-extendable measurement registers (SHA-384, 48 bytes each).
    pub rtmr: [[u8; 48]; 4],
    /// REPORTDATA: 64 bytes the TD asked to be attested (the caller's binding, e.g. a key hash).
    pub report_data: [u8; 64],
    /// TD 1.5 and later: the current TEE TCB after a TD-preserving module update.
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TD 1.5 and later: SERVTD_HASH of the bound service TDs.
    pub mr_service_td: Option<[u8; 48]>,
    /// TD 1.5 "ex" only.
    pub td15_ex: Option<Td15ExFields>,
}

/// The Quoting Enclave's SGX report (the fields the verifier appraises).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QeReport {
    /// CPU security version of the platform that ran the QE.
    pub cpu_svn: [u8; 16],
    /// MISCSELECT, little-endian.
    pub misc_select: u32,
    /// SGX enclave attributes.
    pub attributes: [u8; 16],
    /// MRENCLAVE: SHA-256 of the QE's code and data.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER: SHA-256 of the QE signer's public key.
    pub mr_signer: [u8; 32],
    /// ISV product ID.
    pub isv_prod_id: u16,
    /// ISV security version, appraised against the QE identity's TCB levels.
    pub isv_svn: u16,
    /// First 32 bytes: SHA-256 of attestation key ‖ QE auth data; the rest zero.
    pub report_data: [u8; 64],
}

/// Certification data types (Intel DCAP `sgx_ql_cert_key_type_t`) that may identify the PCK
/// inside the QE report certification data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertDataType {
    /// Type 1: PPID in the clear.
    PlainPpid,
    /// Type 2: PPID encrypted with RSA-2048-OAEP.
    EncryptedPpidRsa2048,
    /// Type 3: PPID encrypted with RSA-3072-OAEP.
    EncryptedPpidRsa3072,
    /// Type 4: the PCK leaf certificate alone.
    PckLeafCert,
    /// PEM chain: PCK leaf, PCK Platform/Processor CA, Intel SGX Root CA.
    PckCertChain,
    /// Type 7: platform manifest.
    PlatformManifest,
}

impl CertDataType {
    /// The wire value.
    pub fn code(self) -> u16 {
        match self {
            CertDataType::PlainPpid => 1,
            CertDataType::EncryptedPpidRsa2048 => 2,
            CertDataType::EncryptedPpidRsa3072 => 3,
            CertDataType::PckLeafCert => 4,
            CertDataType::PckCertChain => 5,
            CertDataType::PlatformManifest => 7,
        }
    }

    fn from_u16(value: u16) -> Option<Self> {
        [
            CertDataType::PlainPpid,
            CertDataType::EncryptedPpidRsa2048,
            CertDataType::EncryptedPpidRsa3072,
            CertDataType::PckLeafCert,
            CertDataType::PckCertChain,
            CertDataType::PlatformManifest,
        ]
        .into_iter()
        .find(|data_type| data_type.code() == value)
    }
}

/// The certification data nested in the QE report certification data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificationData {
    /// How `data` is encoded.
    pub data_type: CertDataType,
    /// The certification data bytes (for type 5, the PEM chain as sent).
    pub data: Vec<u8>,
}

/// The unsigned tail of the quote: signatures, attestation key and the QE's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureData {
    /// ECDSA P-256 r‖s by the attestation key over the signed region.
    pub signature: [u8; 64],
    /// Attestation public key, raw X‖Y.
    pub attestation_key: [u8; 64],
    /// The QE report, parsed from `qe_report_bytes`.
    pub qe_report: QeReport,
    /// The 384 QE report bytes exactly as signed by the PCK key.
    pub qe_report_bytes: [u8; QE_REPORT_LEN],
    /// ECDSA P-256 r‖s by the PCK leaf key over `qe_report_bytes`.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data, hashed with the attestation key into the QE report's report data.
    pub qe_auth_data: Vec<u8>,
    /// The credentials that identify the PCK signing the QE report.
    pub certification: CertificationData,
}

/// A parsed TDX quote (v4 or v5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// The 48-byte header.
    pub header: QuoteHeader,
    /// The TD report body.
    pub body: TdReport,
    /// Header and body as received: what the attestation key signs.
    pub signed_region: Vec<u8>,
    /// Everything after the body: signatures, attestation key and the QE's credentials.
    pub signature_data: SignatureData,
}

impl Quote {
    /// The PCK certificate chain (leaf first) the quote carries as certification data type 5,
    /// not verified; `None` for other certification data types.
    pub fn pck_chain(&self) -> Option<Result<Vec<Vec<u8>>, TdxError>> {
        let certification = &self.signature_data.certification;
        (certification.data_type == CertDataType::PckCertChain).then(|| {
            super::pem::certificates(&certification.data).map_err(TdxError::MalformedCertChain)
        })
    }

    /// Parses a quote by its declared lengths; trailing bytes after the signature data are ignored.
    pub fn parse(bytes: &[u8]) -> Result<Quote, TdxError> {
        if bytes.len() > MAX_QUOTE_LEN {
            return Err(TdxError::TooLarge {
                what: "quote",
                len: bytes.len(),
                max: MAX_QUOTE_LEN,
            });
        }
        let mut cursor = Cursor::new(bytes);
        let header = parse_header(&mut cursor)?;
        let kind = match header.version {
            4 => TdReportKind::Td10,
            5 => {
                let body_type = cursor.u16("body type")?;
                let body_size = cursor.u32("body size")?;
                let kind = TdReportKind::from_body_type(body_type)
                    .ok_or(TdxError::UnsupportedBodyType(body_type))?;
                if usize::try_from(body_size).ok() != Some(kind.body_len()) {
                    return Err(TdxError::BodySizeMismatch {
                        body_type,
                        declared: body_size,
                        expected: kind.body_len(),
                    });
                }
                kind
            }
            version => return Err(TdxError::UnsupportedVersion(version)),
        };
        let body = parse_td_report(kind, &mut cursor)?;
        let signed_region = bytes
            .get(..cursor.offset)
            .ok_or(TdxError::Truncated {
                field: "signed region",
                offset: 0,
            })?
            .to_vec();
        let signature_data_len = cursor.u32_len("signature data length")?;
        let signature_data_offset = cursor.offset;
        let signature_bytes = cursor.take("signature data", signature_data_len)?;
        let signature_data =
            parse_signature_data(&mut Cursor::nested(signature_bytes, signature_data_offset))?;
        // Anything after the declared signature data is unsigned padding: never read it.
        Ok(Quote {
            header,
            body,
            signed_region,
            signature_data,
        })
    }

    /// The quote format version (4 or 5).
    pub fn version(&self) -> u16 {
        self.header.version
    }
}

fn parse_header(cursor: &mut Cursor<'_>) -> Result<QuoteHeader, TdxError> {
    let version = cursor.u16("version")?;
    if version != 4 && version != 5 {
        return Err(TdxError::UnsupportedVersion(version));
    }
    let attestation_key_type = cursor.u16("attestation key type")?;
    if attestation_key_type != ATTESTATION_KEY_TYPE_ECDSA_P256 {
        return Err(TdxError::UnsupportedKeyType(attestation_key_type));
    }
    let tee_type = cursor.u32("TEE type")?;
    if tee_type != TEE_TYPE_TDX {
        return Err(TdxError::UnsupportedTeeType(tee_type));
    }
    let header = QuoteHeader {
        version,
        attestation_key_type,
        tee_type,
        qe_svn: cursor.u16("QE SVN")?,
        pce_svn: cursor.u16("PCE SVN")?,
        qe_vendor_id: cursor.array("QE vendor ID")?,
        user_data: cursor.array("user data")?,
    };
    Ok(header)
}

fn parse_td_report(kind: TdReportKind, cursor: &mut Cursor<'_>) -> Result<TdReport, TdxError> {
    let mut report = TdReport {
        kind,
        tee_tcb_svn: cursor.array("TEE_TCB_SVN")?,
        mr_seam: cursor.array("MRSEAM")?,
        mr_signer_seam: cursor.array("MRSIGNERSEAM")?,
        seam_attributes: cursor.array("SEAMATTRIBUTES")?,
        td_attributes: cursor.array("TDATTRIBUTES")?,
        xfam: cursor.array("XFAM")?,
        mr_td: cursor.array("MRTD")?,
        mr_config_id: cursor.array("MRCONFIGID")?,
        mr_owner: cursor.array("MROWNER")?,
        mr_owner_config: cursor.array("MROWNERCONFIG")?,
        rtmr: [
            cursor.array("RTMR0")?,
            cursor.array("RTMR1")?,
            cursor.array("RTMR2")?,
            cursor.array("RTMR3")?,
        ],
        report_data: cursor.array("REPORTDATA")?,
        tee_tcb_svn2: None,
        mr_service_td: None,
        td15_ex: None,
    };
    if kind == TdReportKind::Td10 {
        return Ok(report);
    }
    report.tee_tcb_svn2 = Some(cursor.array("TEE_TCB_SVN2")?);
    report.mr_service_td = Some(cursor.array("MRSERVICETD")?);
    if kind == TdReportKind::Td15Ex {
        report.td15_ex = Some(Td15ExFields {
            vm_id: cursor.u8("VMID")?,
            td_id: cursor.array("TD_ID")?,
            dev_info: cursor.array("DEV_INFO")?,
            init_service_td_hash: cursor.array("INIT_SERVTD_HASH")?,
            init_service_td_attributes: cursor.array("INIT_SERVTD_ATTRIBUTES")?,
            init_cpu_svn: cursor.array("INIT_CPUSVN")?,
            init_tee_tcb_svn: cursor.array("INIT_TEE_TCB_SVN")?,
            init_tee_fmspc: cursor.array("INIT_TEE_FMSPC")?,
            cur_service_td_hash: cursor.array("CUR_SERVTD_HASH")?,
            cur_service_td_attributes: cursor.array("CUR_SERVTD_ATTRIBUTES")?,
        });
    }
    Ok(report)
}

fn parse_signature_data(cursor: &mut Cursor<'_>) -> Result<SignatureData, TdxError> {
    let signature = cursor.array("quote signature")?;
    let attestation_key = cursor.array("attestation key")?;
    let outer_type = cursor.u16("certification data type")?;
    if outer_type != CERT_DATA_QE_REPORT {
        return Err(TdxError::UnsupportedCertDataType(outer_type));
    }
    let outer_len = cursor.u32_len("certification data size")?;
    let outer_offset = cursor.offset;
    let outer = cursor.take("certification data", outer_len)?;
    let mut cursor = Cursor::nested(outer, outer_offset);

    let qe_report_bytes: [u8; QE_REPORT_LEN] = cursor.array("QE report")?;
    let qe_report = parse_qe_report(&qe_report_bytes)?;
    let qe_report_signature = cursor.array("QE report signature")?;
    let auth_len = usize::from(cursor.u16("QE auth data size")?);
    let qe_auth_data = cursor.take("QE auth data", auth_len)?.to_vec();
    let inner_type = cursor.u16("inner certification data type")?;
    let data_type =
        CertDataType::from_u16(inner_type).ok_or(TdxError::UnsupportedCertDataType(inner_type))?;
    let inner_len = cursor.u32_len("inner certification data size")?;
    let data = cursor.take("inner certification data", inner_len)?.to_vec();
    Ok(SignatureData {
        signature,
        attestation_key,
        qe_report,
        qe_report_bytes,
        qe_report_signature,
        qe_auth_data,
        certification: CertificationData { data_type, data },
    })
}

/// Reads the SGX report body fields at their fixed offsets (CPUSVN @0, MISCSELECT @16,
/// ATTRIBUTES @48, MRENCLAVE @64, MRSIGNER @128, ISVPRODID @256, ISVSVN @258, REPORTDATA @320).
fn parse_qe_report(bytes: &[u8; QE_REPORT_LEN]) -> Result<QeReport, TdxError> {
    let mut cursor = Cursor::new(bytes);
    let cpu_svn = cursor.array("QE CPUSVN")?;
    let misc_select = cursor.u32("QE MISCSELECT")?;
    cursor.skip("QE reserved", 28)?;
    let attributes = cursor.array("QE ATTRIBUTES")?;
    let mr_enclave = cursor.array("QE MRENCLAVE")?;
    cursor.skip("QE reserved", 32)?;
    let mr_signer = cursor.array("QE MRSIGNER")?;
    cursor.skip("QE reserved", 96)?;
    let isv_prod_id = cursor.u16("QE ISVPRODID")?;
    let isv_svn = cursor.u16("QE ISVSVN")?;
    cursor.skip("QE reserved", 60)?;
    let report_data = cursor.array("QE REPORTDATA")?;
    Ok(QeReport {
        cpu_svn,
        misc_select,
        attributes,
        mr_enclave,
        mr_signer,
        isv_prod_id,
        isv_svn,
        report_data,
    })
}

/// A forward-only reader that names the field it failed on and its absolute quote offset.
struct Cursor<'a> {
    bytes: &'a [u8],
    /// Offset of `bytes[0]` in the whole quote, for error messages.
    base: usize,
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor {
            bytes,
            base: 0,
            offset: 0,
        }
    }

    fn nested(bytes: &'a [u8], base: usize) -> Self {
        Cursor {
            bytes,
            base,
            offset: 0,
        }
    }

    fn take(&mut self, field: &'static str, len: usize) -> Result<&'a [u8], TdxError> {
        let truncated = TdxError::Truncated {
            field,
            offset: self.base.saturating_add(self.offset),
        };
        let end = self.offset.checked_add(len).ok_or(truncated.clone())?;
        let slice = self.bytes.get(self.offset..end).ok_or(truncated)?;
        self.offset = end;
        Ok(slice)
    }

    fn skip(&mut self, field: &'static str, len: usize) -> Result<(), TdxError> {
        self.take(field, len).map(|_| ())
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], TdxError> {
        let offset = self.base.saturating_add(self.offset);
        self.take(field, N)?
            .try_into()
            .map_err(|_| TdxError::Truncated { field, offset })
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, TdxError> {
        self.array::<1>(field).map(|[byte]| byte)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, TdxError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, TdxError> {
        self.array(field).map(u32::from_le_bytes)
    }

    /// A u32 length field; any value that does not fit `usize` cannot fit the input either.
    fn u32_len(&mut self, field: &'static str) -> Result<usize, TdxError> {
        let offset = self.base.saturating_add(self.offset);
        let len = self.u32(field)?;
        usize::try_from(len).map_err(|_| TdxError::Truncated { field, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays out a quote field by field, as a TDQE would.
    fn build(version: u16, kind: TdReportKind, inner_type: u16, chain: &[u8]) -> Vec<u8> {
        let mut quote = Vec::new();
        quote.extend_from_slice(&version.to_le_bytes());
        quote.extend_from_slice(&2u16.to_le_bytes());
        quote.extend_from_slice(&0x81u32.to_le_bytes());
        quote.extend_from_slice(&[0; 4]);
        quote.extend_from_slice(&INTEL_QE_VENDOR_ID);
        quote.extend_from_slice(&[0xee; 20]);
        if version == 5 {
            quote.extend_from_slice(&kind.body_type().to_le_bytes());
            quote.extend_from_slice(&(kind.body_len() as u32).to_le_bytes());
        }
        // Each body byte is its offset (mod 251) so every field is distinguishable.
        quote.extend((0..kind.body_len()).map(|i| (i % 251) as u8));
        let mut outer = Vec::new();
        outer.extend((0..QE_REPORT_LEN).map(|i| (i % 253) as u8));
        outer.extend_from_slice(&[0x51; 64]);
        outer.extend_from_slice(&32u16.to_le_bytes());
        outer.extend_from_slice(&[0xad; 32]);
        outer.extend_from_slice(&inner_type.to_le_bytes());
        outer.extend_from_slice(&(chain.len() as u32).to_le_bytes());
        outer.extend_from_slice(chain);
        let mut signature_data = Vec::new();
        signature_data.extend_from_slice(&[0x5a; 64]);
        signature_data.extend_from_slice(&[0x4b; 64]);
        signature_data.extend_from_slice(&6u16.to_le_bytes());
        signature_data.extend_from_slice(&(outer.len() as u32).to_le_bytes());
        signature_data.extend_from_slice(&outer);
        quote.extend_from_slice(&(signature_data.len() as u32).to_le_bytes());
        quote.extend_from_slice(&signature_data);
        quote
    }

    fn byte_at(body_offset: usize) -> u8 {
        (body_offset % 251) as u8
    }

    #[test]
    fn v4_fields_sit_at_their_offsets() {
        let bytes = build(4, TdReportKind::Td10, 5, b"chain");
        let quote = Quote::parse(&bytes).unwrap();
        assert_eq!(quote.version(), 4);
        assert_eq!(quote.header.user_data, [0xee; 20]);
        let body = &quote.body;
        assert_eq!(body.kind, TdReportKind::Td10);
        assert_eq!(body.mr_td[0], byte_at(136));
        assert_eq!(body.td_attributes[0], byte_at(120));
        assert_eq!(body.rtmr[3][0], byte_at(472));
        assert_eq!(body.report_data[63], byte_at(583));
        assert_eq!((body.tee_tcb_svn2, body.mr_service_td), (None, None));
        assert_eq!(quote.signed_region, bytes[..632]);
        let sig = &quote.signature_data;
        assert_eq!(
            (sig.signature, sig.attestation_key),
            ([0x5a; 64], [0x4b; 64])
        );
        assert_eq!(sig.qe_report.isv_prod_id, u16::from_le_bytes([3, 4]));
        assert_eq!(sig.qe_report.mr_signer[0], 128);
        assert_eq!(sig.qe_report.report_data[0], (320 % 253) as u8);
        assert_eq!(sig.qe_auth_data, [0xad; 32]);
        assert_eq!(sig.certification.data_type, CertDataType::PckCertChain);
        assert_eq!(sig.certification.data, b"chain");
    }

    #[test]
    fn v5_body_types_parse() {
        for kind in [TdReportKind::Td10, TdReportKind::Td15, TdReportKind::Td15Ex] {
            let bytes = build(5, kind, 5, b"c");
            let quote = Quote::parse(&bytes).unwrap();
            assert_eq!(quote.body.kind, kind);
            assert_eq!(quote.signed_region.len(), 54 + kind.body_len());
            assert_eq!(quote.body.mr_td[0], byte_at(136));
            match kind {
                TdReportKind::Td10 => assert!(quote.body.tee_tcb_svn2.is_none()),
                _ => {
                    assert_eq!(quote.body.tee_tcb_svn2.unwrap()[0], byte_at(584));
                    assert_eq!(quote.body.mr_service_td.unwrap()[47], byte_at(647));
                }
            }
            if kind == TdReportKind::Td15Ex {
                let ex = quote.body.td15_ex.as_ref().unwrap();
                assert_eq!(ex.vm_id, byte_at(648));
                assert_eq!(ex.td_id[0], byte_at(649));
                assert_eq!(ex.init_tee_fmspc[0], byte_at(817));
                assert_eq!(ex.cur_service_td_attributes[7], byte_at(884));
            } else {
                assert!(quote.body.td15_ex.is_none());
            }
        }
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut bytes = build(4, TdReportKind::Td10, 5, b"chain");
        let clean = Quote::parse(&bytes).unwrap();
        bytes.extend_from_slice(b"extra bytes(only for testing purpose)");
        assert_eq!(Quote::parse(&bytes).unwrap(), clean);
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = build(5, TdReportKind::Td15, 5, b"chain");
        for len in 0..bytes.len() {
            let err = Quote::parse(&bytes[..len]).unwrap_err();
            assert_eq!(err.kind().as_str(), "malformed", "len {len}: {err}");
            assert!(
                matches!(err, TdxError::Truncated { .. }),
                "len {len}: {err}"
            );
        }
    }

    #[test]
    fn declared_lengths_beyond_their_container_are_rejected() {
        let bytes = build(4, TdReportKind::Td10, 5, b"chain");
        // signature data length, outer certification size, inner certification size
        for offset in [632, 766, 1254] {
            let mut bad = bytes.clone();
            bad[offset..offset + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            assert!(
                matches!(Quote::parse(&bad), Err(TdxError::Truncated { .. })),
                "{offset}"
            );
        }
        let mut bad = bytes.clone();
        bad[1218..1220].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(
            Quote::parse(&bad),
            Err(TdxError::Truncated {
                field: "QE auth data",
                ..
            })
        ));
    }

    #[test]
    fn header_values_are_checked() {
        let v4 = build(4, TdReportKind::Td10, 5, b"c");
        let patched = |offset: usize, value: &[u8]| {
            let mut bad = v4.clone();
            bad[offset..offset + value.len()].copy_from_slice(value);
            Quote::parse(&bad).unwrap_err()
        };
        assert_eq!(
            patched(0, &3u16.to_le_bytes()),
            TdxError::UnsupportedVersion(3)
        );
        assert_eq!(
            patched(0, &6u16.to_le_bytes()),
            TdxError::UnsupportedVersion(6)
        );
        assert_eq!(
            patched(2, &3u16.to_le_bytes()),
            TdxError::UnsupportedKeyType(3)
        );
        assert_eq!(
            patched(4, &0u32.to_le_bytes()),
            TdxError::UnsupportedTeeType(0)
        );
        assert_eq!(
            patched(764, &5u16.to_le_bytes()),
            TdxError::UnsupportedCertDataType(5)
        );
        assert_eq!(
            patched(1252, &6u16.to_le_bytes()),
            TdxError::UnsupportedCertDataType(6)
        );
        assert_eq!(
            patched(1252, &0u16.to_le_bytes()),
            TdxError::UnsupportedCertDataType(0)
        );
    }

    #[test]
    fn v5_body_descriptor_is_checked() {
        let v5 = build(5, TdReportKind::Td15, 5, b"c");
        let mut bad = v5.clone();
        bad[48..50].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(
            Quote::parse(&bad).unwrap_err(),
            TdxError::UnsupportedBodyType(1)
        );
        bad[48..50].copy_from_slice(&5u16.to_le_bytes());
        assert_eq!(
            Quote::parse(&bad).unwrap_err(),
            TdxError::UnsupportedBodyType(5)
        );
        let mut bad = v5.clone();
        bad[50..54].copy_from_slice(&584u32.to_le_bytes());
        assert_eq!(
            Quote::parse(&bad).unwrap_err(),
            TdxError::BodySizeMismatch {
                body_type: 3,
                declared: 584,
                expected: 648
            }
        );
    }

    #[test]
    fn oversized_input_is_rejected_before_parsing() {
        let bytes = vec![0u8; MAX_QUOTE_LEN + 1];
        assert!(matches!(
            Quote::parse(&bytes),
            Err(TdxError::TooLarge { .. })
        ));
    }
}
