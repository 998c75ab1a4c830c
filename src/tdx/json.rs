//! Small decoders shared by the TCB Info and QE Identity documents: Intel's RFC 3339 dates,
//! fixed-width hex fields, and the issueDate..nextUpdate window check.

use super::error::TdxError;
use super::status::{TcbStatus, TcbVerdict};
use serde::Deserialize;

/// Unix seconds of an RFC 3339 date-time (`2025-06-19T10:16:03Z`, optionally with a fraction
/// of a second, which is dropped, or a `±HH:MM` offset). `None` if it is not one.
pub(crate) fn parse_rfc3339(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let field = bytes.get(range)?;
        field.iter().try_fold(0i64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let separators_ok = bytes.get(4) == Some(&b'-')
        && bytes.get(7) == Some(&b'-')
        && matches!(bytes.get(10), Some(b'T' | b't'))
        && bytes.get(13) == Some(&b':')
        && bytes.get(16) == Some(&b':');
    if !separators_ok {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let max_day = *month_days.get(usize::try_from(month).ok()?.checked_sub(1)?)?;
    // Second 60 is a leap second; it folds onto the next second like every Unix clock does.
    if !(1..=max_day).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = bytes.get(19..)?;
    if let Some((b'.', fraction)) = rest.split_first() {
        let len = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        rest = fraction.get(len..)?;
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| -> Option<i64> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let (hours, minutes) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let magnitude = hours * 3600 + minutes * 60;
            if *sign == b'+' {
                magnitude
            } else {
                -magnitude
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(seconds).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
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
    hex::decode_to_slice(text, &mut out).map_err(|_| {
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
    }

    #[test]
    fn malformed_dates() {
        for bad in [
            "",
            "2025-06-19",
            "2025-06-19T10:32:27",
            "2025-06-19 10:32:27Z",
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
