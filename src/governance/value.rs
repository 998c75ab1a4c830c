//! Parsing the values a proposal registers or revokes, and the addresses it targets, strictly:
//! exactly the width of the ABI type (optional `0x`, any case), never padded or trimmed. Users
//! have whitelisted a short hex left-padded into a hash nobody measures; the contracts would take
//! it, so this is where it must be refused.

use super::GovernanceError;
use crate::encoding::{parse_hex_exact, HexError};
use crate::nitro::DEBUG_OS_IMAGE_HASH;
use crate::registry::view::{Address, Bytes32};

fn exact<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N], GovernanceError> {
    parse_hex_exact::<N>(text).map_err(|error| match error {
        HexError::WrongLength { got, expected } => GovernanceError::HexWidth {
            what,
            value: text.to_owned(),
            got,
            expected,
        },
        HexError::NotHex(_) | HexError::TooLong { .. } => GovernanceError::InvalidHex {
            what,
            value: text.to_owned(),
        },
    })
}

/// A measurement, compose hash or device id to put on (or take off) an allowlist: exactly 32
/// bytes, neither the zero value nor the debug-enclave image hash.
pub fn parse_measurement(what: &'static str, text: &str) -> Result<Bytes32, GovernanceError> {
    let value = exact::<32>(what, text)?;
    check_measurement(what, &value)?;
    Ok(value)
}

/// The refusals of [`parse_measurement`] for a value already in bytes (e.g. from evidence).
pub fn check_measurement(what: &'static str, value: &Bytes32) -> Result<(), GovernanceError> {
    if *value == [0; 32] {
        return Err(GovernanceError::ZeroValue { what });
    }
    if *value == DEBUG_OS_IMAGE_HASH {
        return Err(GovernanceError::DebugImageHash { what });
    }
    Ok(())
}

/// Any 32-byte word (a timelock salt or predecessor): exact width, zero allowed.
pub fn parse_word(what: &'static str, text: &str) -> Result<Bytes32, GovernanceError> {
    exact::<32>(what, text)
}

/// A contract address: exactly 20 bytes, not the zero address.
pub fn parse_address(what: &'static str, text: &str) -> Result<Address, GovernanceError> {
    let address = exact::<20>(what, text)?;
    if address == [0; 20] {
        return Err(GovernanceError::ZeroValue { what });
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0x14ad4e2bd4c1d5a6a0d3e8e7c7a2b1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d61c67";

    #[test]
    fn exactly_32_bytes_with_or_without_0x_in_any_case() {
        let value = parse_measurement("os image hash", HASH).unwrap();
        assert_eq!(value[0], 0x14);
        assert_eq!(value[31], 0x67);
        assert_eq!(
            parse_measurement("os image hash", &HASH[2..].to_uppercase()).unwrap(),
            value
        );
        assert_eq!(
            parse_measurement("os image hash", &format!("0X{}", &HASH[2..])).unwrap(),
            value
        );
    }

    #[test]
    fn short_and_long_hex_are_refused_never_padded() {
        for (text, got) in [
            (&HASH[..HASH.len() - 2], 31),
            ("0x1", 0),
            ("0x01", 1),
            ("", 0),
            (&format!("{HASH}00")[..], 33),
        ] {
            let error = parse_measurement("compose hash", text).unwrap_err();
            // An odd digit count is not even bytes.
            if text.len() % 2 == 1 {
                assert_eq!(error.kind().as_str(), "invalid_hex", "{text}");
                continue;
            }
            assert_eq!(error.kind().as_str(), "hex_width", "{text}");
            assert!(
                matches!(error, GovernanceError::HexWidth { got: g, expected: 32, .. } if g == got),
                "{error:?}"
            );
        }
        assert_eq!(
            parse_measurement("compose hash", "0xzz")
                .unwrap_err()
                .kind()
                .as_str(),
            "invalid_hex"
        );
    }

    #[test]
    fn zero_and_debug_image_hash_are_refused() {
        let zero = format!("0x{}", "00".repeat(32));
        assert_eq!(
            parse_measurement("os image hash", &zero)
                .unwrap_err()
                .kind()
                .as_str(),
            "zero_value"
        );
        let debug = crate::encoding::to_0x_hex(&DEBUG_OS_IMAGE_HASH);
        assert_eq!(
            parse_measurement("os image hash", &debug)
                .unwrap_err()
                .kind()
                .as_str(),
            "debug_image_hash"
        );
        // Salts and predecessors may be zero.
        assert_eq!(parse_word("salt", &zero).unwrap(), [0; 32]);
    }

    #[test]
    fn addresses_are_20_nonzero_bytes() {
        let address = parse_address("app", "0x00000000000000000000000000000000000000aB").unwrap();
        assert_eq!(address[19], 0xab);
        assert_eq!(
            parse_address("app", "0xab").unwrap_err().kind().as_str(),
            "hex_width"
        );
        assert_eq!(
            parse_address("app", &format!("0x{}", "00".repeat(20)))
                .unwrap_err()
                .kind()
                .as_str(),
            "zero_value"
        );
    }
}
