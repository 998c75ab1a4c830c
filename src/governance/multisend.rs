//! Safe's MultiSendCallOnly 1.4.1: several calls packed into one `multiSend(bytes)`, which a Safe
//! runs by delegatecall. Each packed call is
//! `operation (1 byte, 0 = call) ‖ to (20) ‖ value (32) ‖ data length (32) ‖ data`.

use alloy::primitives::{hex, Bytes, U256};
use alloy::sol_types::SolCall;

use super::abi::IMultiSend;
use super::{Call, GovernanceError};
use crate::registry::view::Address;

/// MultiSendCallOnly 1.4.1's canonical address (safe-deployments; the same on every chain that
/// has the 1.4.1 contracts).
pub const MULTI_SEND_CALL_ONLY_1_4_1: Address = hex!("9641d764fc13c8B624c04430C7356C1C7C8102e2");

/// Bytes before each packed call's data.
const HEADER: usize = 1 + 20 + 32 + 32;

/// The packed `transactions` argument.
pub fn pack(calls: &[Call]) -> Vec<u8> {
    let mut packed = Vec::with_capacity(calls.iter().map(|c| HEADER + c.data.len()).sum());
    for call in calls {
        packed.push(0);
        packed.extend_from_slice(&call.to);
        packed.extend_from_slice(&call.value.to_be_bytes::<32>());
        packed.extend_from_slice(&U256::from(call.data.len()).to_be_bytes::<32>());
        packed.extend_from_slice(&call.data);
    }
    packed
}

/// `multiSend(pack(calls))`.
pub fn calldata(calls: &[Call]) -> Vec<u8> {
    IMultiSend::multiSendCall {
        transactions: Bytes::from(pack(calls)),
    }
    .abi_encode()
}

/// The calls of a `multiSend` calldata. Only plain calls are accepted: MultiSendCallOnly reverts
/// on a delegatecall entry, and a proposal has no business delegating.
pub fn decode(data: &[u8]) -> Result<Vec<Call>, GovernanceError> {
    let bad = |what: String| GovernanceError::Undecodable(format!("multiSend: {what}"));
    let call =
        IMultiSend::multiSendCall::abi_decode_validate(data).map_err(|e| bad(e.to_string()))?;
    let mut rest: &[u8] = &call.transactions;
    let mut calls = Vec::new();
    while !rest.is_empty() {
        let Some((header, tail)) = rest.split_first_chunk::<HEADER>() else {
            return Err(bad(format!("{} trailing bytes", rest.len())));
        };
        if header[0] != 0 {
            return Err(bad(format!("entry {} is not a plain call", calls.len())));
        }
        let to: Address = header[1..21].try_into().expect("20 bytes");
        let value = U256::from_be_slice(&header[21..53]);
        let length = usize::try_from(U256::from_be_slice(&header[53..HEADER]))
            .ok()
            .filter(|length| *length <= tail.len())
            .ok_or_else(|| bad(format!("entry {} overruns the batch", calls.len())))?;
        let (data, tail) = tail.split_at(length);
        calls.push(Call {
            to,
            value,
            data: data.to_vec(),
        });
        rest = tail;
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_as_safe_does() {
        let calls = vec![
            Call::new([1; 20], vec![0xaa, 0xbb]),
            Call {
                to: [2; 20],
                value: U256::from(5),
                data: vec![],
            },
        ];
        let packed = pack(&calls);
        assert_eq!(packed.len(), 2 * HEADER + 2);
        assert_eq!(packed[0], 0);
        assert_eq!(&packed[1..21], &[1; 20]);
        assert_eq!(packed[HEADER - 1], 2);
        assert_eq!(&packed[HEADER..HEADER + 2], &[0xaa, 0xbb]);
        let data = calldata(&calls);
        assert_eq!(hex::encode(&data[..4]), "8d80ff0a");
        assert_eq!(decode(&data).unwrap(), calls);
    }

    #[test]
    fn refuses_delegatecalls_and_truncated_entries() {
        let calls = vec![Call::new([1; 20], vec![0xaa, 0xbb])];
        let mut packed = pack(&calls);
        packed[0] = 1;
        let encode = |packed: Vec<u8>| {
            IMultiSend::multiSendCall {
                transactions: Bytes::from(packed),
            }
            .abi_encode()
        };
        for data in [
            encode(packed),
            encode(pack(&calls)[..HEADER + 1].to_vec()),
            encode(pack(&calls)[..10].to_vec()),
            vec![0x8d, 0x80, 0xff, 0x0a],
        ] {
            assert_eq!(
                decode(&data).unwrap_err().kind().as_str(),
                "undecodable_calldata"
            );
        }
        assert_eq!(
            hex::encode(MULTI_SEND_CALL_ONLY_1_4_1),
            "9641d764fc13c8b624c04430c7356c1c7c8102e2"
        );
    }
}
