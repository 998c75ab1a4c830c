//! When a cached item is refreshed: ahead of its end, so that a quote never waits on a fetch
//! while the upstream is healthy.

use std::str::FromStr;

/// When to refresh an item fetched at `fetched_at` that may be served until `until`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RefreshPolicy {
    /// Once this fraction (0 to 1) of the time from the fetch to the end has passed.
    Fraction(f64),
    /// This many seconds before the end.
    Before(u64),
}

impl Default for RefreshPolicy {
    /// At 80 % of the window.
    fn default() -> Self {
        RefreshPolicy::Fraction(0.8)
    }
}

impl RefreshPolicy {
    /// The first second a refresh is due: never sooner than `min_interval` after the fetch (a
    /// stale upstream must not be asked on every request), never after `until`.
    pub(crate) fn refresh_at(self, fetched_at: u64, until: u64, min_interval: u64) -> u64 {
        let window = until.saturating_sub(fetched_at);
        let due = match self {
            RefreshPolicy::Fraction(fraction) => {
                let fraction = fraction.clamp(0.0, 1.0);
                fetched_at.saturating_add((window as f64 * fraction) as u64)
            }
            RefreshPolicy::Before(seconds) => until.saturating_sub(seconds),
        };
        due.max(fetched_at.saturating_add(min_interval)).min(until)
    }
}

impl FromStr for RefreshPolicy {
    type Err = String;

    /// `80%` (of the window), or a lead time before the end: `3600`, `90s`, `30m`, `6h`, `2d`.
    fn from_str(text: &str) -> Result<RefreshPolicy, String> {
        let text = text.trim();
        let invalid = || format!("{text:?} is neither a percentage (80%) nor a duration (6h)");
        if let Some(percent) = text.strip_suffix('%') {
            let percent: f64 = percent.trim().parse().map_err(|_| invalid())?;
            if !(0.0..=100.0).contains(&percent) {
                return Err(invalid());
            }
            return Ok(RefreshPolicy::Fraction(percent / 100.0));
        }
        let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => text.split_at(at),
            None => (text, "s"),
        };
        let count: u64 = digits.parse().map_err(|_| invalid())?;
        let unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(invalid()),
        };
        count
            .checked_mul(unit)
            .map(RefreshPolicy::Before)
            .ok_or_else(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_of_the_remaining_window() {
        let policy = RefreshPolicy::default();
        assert_eq!(policy.refresh_at(1000, 2000, 0), 1800);
        // Fetched late in its life (a stale PCCS): still 80 % of what is left, but not at once.
        assert_eq!(policy.refresh_at(1990, 2000, 0), 1998);
        assert_eq!(policy.refresh_at(1999, 2000, 60), 2000);
        assert_eq!(policy.refresh_at(1000, 2000, 900), 1900);
    }

    #[test]
    fn lead_time_before_the_end() {
        let policy = RefreshPolicy::Before(300);
        assert_eq!(policy.refresh_at(1000, 2000, 0), 1700);
        assert_eq!(policy.refresh_at(1000, 1200, 60), 1060);
        assert_eq!(RefreshPolicy::Fraction(2.0).refresh_at(0, 100, 0), 100);
    }

    #[test]
    fn parsing() {
        assert_eq!("80%".parse(), Ok(RefreshPolicy::Fraction(0.8)));
        assert_eq!("3600".parse(), Ok(RefreshPolicy::Before(3600)));
        assert_eq!("30m".parse(), Ok(RefreshPolicy::Before(1800)));
        assert_eq!("6h".parse(), Ok(RefreshPolicy::Before(21_600)));
        assert_eq!("2d".parse(), Ok(RefreshPolicy::Before(172_800)));
        for bad in [
            "",
            "101%",
            "-1%",
            "6w",
            "h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<RefreshPolicy>().is_err(), "{bad}");
        }
    }
}
