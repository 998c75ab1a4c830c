//! Small decoders shared by the TCB Info and QE Identity documents: Intel's RFC 3339 dates,
//! fixed-width hex fields, and the issueDate..nextUpdate window check.

use super::error::TdxError;
use super::status::{TcbStatus, TcbVerdict};
use serde::Deserialize;

/// Unix seconds of an RFC 3339 date-time (`2025-06-19T10:16:03Z`, optionally with a fraction
/// of a second, which is dropped, or a `±HH:MM` offset). `None` if it is not one.
///
/// The `time` crate's RFC 3339 parser does the work, with one rule added: it takes any byte between
/// the date and the time (RFC 3339's note allows e.g. a space), while the grammar and Intel's
/// collateral use `T`, so only `T` or `t` is accepted. A leap second (`:60`) is accepted only where
/// one can occur (23:59:60 UTC on a month's last day) and reads as the second before it.
pub(crate) fn parse_rfc3339(text: &str) -> Option<u64> {
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    let moment =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(moment.unix_timestamp()).ok()
}

/// A date field of a collateral document.
pub(crate) fn date(
    document: &'static str,
    field: &'static str,
    text: &str,
) -> Result<u64, TdxError> {
    parse_rfc3339(text).ok_or_else(|| {
        TdxError::CollateralInvalid(format!(
            "{document} {field} {text:?} is not an RFC 3339 date"
        ))
    })
}

/// A hex field of exactly `N` bytes (any case).
pub(crate) fn hex_array<const N: usize>(
    document: &'static str,
    field: &'static str,
    text: &str,
) -> Result<[u8; N], TdxError> {
    let mut out = [0u8; N];
    crate::encoding::decode_hex_to_slice(text, &mut out).ok_or_else(|| {
        TdxError::CollateralInvalid(format!("{document} {field} is not {N} bytes of hex"))
    })?;
    Ok(out)
}

/// Rejects a signed document outside its issueDate..nextUpdate window at `now`.
pub(crate) fn check_window(
    document: &'static str,
    issue_date: u64,
    next_update: u64,
    now: u64,
) -> Result<(), TdxError> {
    if now < issue_date {
        return Err(TdxError::CollateralNotYetValid {
            what: document,
            valid_from: issue_date,
            now,
        });
    }
    if now > next_update {
        return Err(TdxError::CollateralExpired {
            what: document,
            valid_until: next_update,
            now,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intel_dates() {
        // The dcap-qvl sample collateral window of expected.json.
        assert_eq!(parse_rfc3339("2025-06-19T10:32:27Z"), Some(1_750_329_147));
        assert_eq!(parse_rfc3339("2025-07-19T10:00:35Z"), Some(1_752_919_235));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("2024-12-31T23:59:59Z"), Some(1_735_689_599));
        assert_eq!(parse_rfc3339("2049-12-31T23:59:59Z"), Some(2_524_607_999));
    }

    #[test]
    fn fractions_and_offsets() {
        assert_eq!(
            parse_rfc3339("2025-06-19T10:32:27.999Z"),
            Some(1_750_329_147)
        );
        assert_eq!(
            parse_rfc3339("2025-06-19T12:32:27+02:00"),
            Some(1_750_329_147)
        );
        assert_eq!(
            parse_rfc3339("2025-06-19T08:02:27-02:30"),
            Some(1_750_329_147)
        );
        assert_eq!(parse_rfc3339("2025-06-19t10:32:27z"), Some(1_750_329_147));
        assert_eq!(
            parse_rfc3339("2025-06-19T10:32:27-00:00"),
            Some(1_750_329_147)
        );
    }

    #[test]
    fn leap_seconds_only_where_they_can_occur() {
        // 2016-12-31T23:59:60Z was a leap second; it reads as the second before.
        assert_eq!(parse_rfc3339("2016-12-31T23:59:60Z"), Some(1_483_228_799));
        assert_eq!(
            parse_rfc3339("2017-01-01T00:59:60+01:00"),
            Some(1_483_228_799)
        );
        assert_eq!(parse_rfc3339("2025-06-19T10:32:60Z"), None);
    }

    #[test]
    fn malformed_dates() {
        for bad in [
            "",
            "2025-06-19",
            "2025-06-19T10:32:27",
            "2025-06-19 10:32:27Z",
            "2025-06-19_10:32:27Z",
            "2025-13-01T00:00:00Z",
            "2025-00-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2025-04-31T00:00:00Z",
            "2025-06-19T24:00:00Z",
            "2025-06-19T10:60:00Z",
            "2025-06-19T10:32:27.Z",
            "2025-06-19T10:32:27+2:00",
            "2025-06-19T10:32:27+24:00",
            "2025-06-19T10:32:27Zjunk",
            "+025-06-19T10:32:27Z",
            "1969-12-31T23:59:59Z",
            "2025-06-19T10:32:27ZZ",
            "２025-06-19T10:32:27Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn window_edges_are_inclusive() {
        assert!(check_window("TCB Info", 10, 20, 10).is_ok());
        assert!(check_window("TCB Info", 10, 20, 20).is_ok());
        assert_eq!(
            check_window("TCB Info", 10, 20, 9)
                .unwrap_err()
                .kind()
                .as_str(),
            "collateral_not_yet_valid"
        );
        assert_eq!(
            check_window("TCB Info", 10, 20, 21)
                .unwrap_err()
                .kind()
                .as_str(),
            "collateral_expired"
        );
    }

    #[test]
    fn hex_fields() {
        assert_eq!(hex_array::<2>("d", "f", "0aFf").unwrap(), [0x0a, 0xff]);
        assert_eq!(
            hex_array::<2>("d", "f", "0a").unwrap_err().kind().as_str(),
            "collateral_invalid"
        );
        assert!(hex_array::<2>("d", "f", "0x0a").is_err());
    }
}

/// A TCB level keyed by a single ISVSVN: the levels of the QE Identity and of a TDX module
/// identity in the TCB Info.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IsvLevelJson {
    tcb: IsvTcbJson,
    tcb_status: TcbStatus,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct IsvTcbJson {
    isvsvn: u16,
}

/// The levels highest ISVSVN first, so the first one at or below an SVN is that SVN's level.
pub(crate) fn isv_levels(levels: &[IsvLevelJson]) -> Vec<(u16, TcbVerdict)> {
    let mut levels: Vec<_> = levels
        .iter()
        .map(|level| {
            let verdict = TcbVerdict {
                status: level.tcb_status,
                advisory_ids: level.advisory_ids.clone(),
            };
            (level.tcb.isvsvn, verdict)
        })
        .collect();
    levels.sort_by_key(|(isvsvn, _)| std::cmp::Reverse(*isvsvn));
    levels
}
