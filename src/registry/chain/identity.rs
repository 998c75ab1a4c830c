//! Code identity: what makes two deployments "the same code".
//!
//! OpenZeppelin's UUPS implementations embed their own address as an immutable (`__self`, for
//! the `onlyProxy` guard), so the runtime code of two deployments of one DstackApp or DstackKms
//! differs in exactly those 20-byte slots and `keccak256(code)` names one deployment only. The
//! identity is `keccak256` of the runtime code with every occurrence of the contract's own
//! address zeroed: equal for every deployment of the same bytecode, and still different for any
//! other code (a code that differs anywhere else hashes differently).

use alloy::primitives::{keccak256, Address, B256};

/// The code identity of `code` deployed at `address`.
pub fn code_identity(code: &[u8], address: Address) -> B256 {
    let own = address.as_slice();
    if code.len() < own.len() || address == Address::ZERO {
        return keccak256(code);
    }
    let mut masked = code.to_vec();
    let mut at = 0;
    while at + own.len() <= masked.len() {
        if &masked[at..at + own.len()] == own {
            masked[at..at + own.len()].fill(0);
            at += own.len();
        } else {
            at += 1;
        }
    }
    keccak256(&masked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_address_is_masked_wherever_it_appears() {
        let a = Address::repeat_byte(0xaa);
        let b = Address::repeat_byte(0xbb);
        let code =
            |own: Address| [&[0x60, 0x80][..], own.as_slice(), &[0x33], own.as_slice()].concat();
        assert_eq!(code_identity(&code(a), a), code_identity(&code(b), b));
        assert_ne!(code_identity(&code(a), a), keccak256(code(a)));
    }

    #[test]
    fn any_other_difference_is_another_identity() {
        let a = Address::repeat_byte(0xaa);
        let b = Address::repeat_byte(0xbb);
        let with = |own: Address, op: u8| [&[op][..], own.as_slice()].concat();
        assert_ne!(
            code_identity(&with(a, 0x60), a),
            code_identity(&with(b, 0x61), b)
        );
        // Another contract's address embedded is not masked: it is part of what the code does.
        assert_ne!(
            code_identity(&with(b, 0x60), a),
            code_identity(&with(a, 0x60), a)
        );
    }

    #[test]
    fn code_without_its_address_hashes_as_is() {
        let code = [0x60, 0x80, 0x60, 0x40, 0x52];
        assert_eq!(
            code_identity(&code, Address::repeat_byte(1)),
            keccak256(code)
        );
    }
}
