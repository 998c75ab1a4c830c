//! The batch file Safe{Wallet}'s Transaction Builder imports: its
//! schema (version "1.0", decimal-string chainId, ms createdAt, meta, transactions with string
//! values), and its checksum, byte for byte as the app computes it (apps/tx-builder
//! src/lib/checksum.ts): keccak-256 of a custom serialization of the file without
//! `meta.checksum` and with `meta.name` null.

use alloy::primitives::{keccak256, Address as AlloyAddress};
use serde_json::{json, Map, Value};

use super::{Call, GovernanceError};
use crate::encoding::to_0x_hex;
use crate::registry::view::Address;

/// The Transaction Builder release whose format this follows.
pub const TX_BUILDER_VERSION: &str = "1.18.3";

/// One Solidity parameter as the Transaction Builder describes a method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameter {
    /// The parameter's name in the ABI (`osImageHash`).
    pub name: &'static str,
    /// Its Solidity type (`bytes32`).
    pub ty: &'static str,
}

/// A batch transaction: the exact calldata, plus the method and its arguments for people
/// reading the file (the app uses `data` whenever it is set and ignores the method).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuilderTransaction {
    /// Target, value and calldata.
    pub call: Call,
    /// The method's name (`scheduleBatch`).
    pub method: &'static str,
    /// Its parameters, in order.
    pub parameters: Vec<Parameter>,
    /// One value per parameter, spelled as the app spells inputs (arrays as `[a,b]`).
    pub arguments: Vec<String>,
}

/// Whose batch it is and when it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    /// The batch's name, shown by the app.
    pub name: String,
    /// What the batch does, shown by the app.
    pub description: String,
    /// The chain the Safe is on.
    pub chain_id: u64,
    /// Milliseconds since the Unix epoch (the caller's clock).
    pub created_at_ms: u64,
    /// The Safe that runs the batch, when known (`meta.createdFromSafeAddress`).
    pub safe: Option<Address>,
}

fn checksummed(address: &Address) -> String {
    AlloyAddress::from(*address).to_checksum(None)
}

/// The batch file, checksum included.
pub fn batch_file(meta: &BatchMeta, transactions: &[BuilderTransaction]) -> Value {
    let transactions: Vec<Value> = transactions
        .iter()
        .map(|tx| {
            let inputs: Vec<Value> = tx
                .parameters
                .iter()
                .map(|p| json!({ "internalType": p.ty, "name": p.name, "type": p.ty }))
                .collect();
            let values: Map<String, Value> = tx
                .parameters
                .iter()
                .zip(&tx.arguments)
                .map(|(p, v)| (p.name.to_owned(), Value::String(v.clone())))
                .collect();
            json!({
                "to": checksummed(&tx.call.to),
                "value": tx.call.value.to_string(),
                "data": to_0x_hex(&tx.call.data),
                "contractMethod": { "inputs": inputs, "name": tx.method, "payable": false },
                "contractInputsValues": values,
            })
        })
        .collect();
    let mut file = json!({
        "version": "1.0",
        "chainId": meta.chain_id.to_string(),
        "createdAt": meta.created_at_ms,
        "meta": {
            "name": meta.name,
            "description": meta.description,
            "txBuilderVersion": TX_BUILDER_VERSION,
            "createdFromSafeAddress": meta.safe.as_ref().map(checksummed).unwrap_or_default(),
            "createdFromOwnerAddress": "",
        },
        "transactions": transactions,
    });
    let sum = checksum(&file);
    file["meta"]["checksum"] = Value::String(sum);
    file
}

/// The checksum the app computes for `file`: `meta.checksum` is left out and `meta.name` counts
/// as null.
pub fn checksum(file: &Value) -> String {
    let mut file = file.clone();
    if let Some(meta) = file.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("checksum");
        meta.insert("name".to_owned(), Value::Null);
    }
    let mut serialized = String::new();
    serialize(&file, &mut serialized);
    to_0x_hex(keccak256(serialized.as_bytes()).as_slice())
}

/// Whether a batch file's `meta.checksum` is the one the app computes (the app only warns on a
/// mismatch; a file we produce always matches).
pub fn verify_checksum(file: &Value) -> Result<bool, GovernanceError> {
    let claimed = file
        .get("meta")
        .and_then(|meta| meta.get("checksum"))
        .and_then(Value::as_str)
        .ok_or_else(|| GovernanceError::InvalidBatchFile("no meta.checksum".into()))?;
    Ok(claimed == checksum(file))
}

/// checksum.ts's `serializeJSONObject`: arrays as `[a,b]`; objects as `{` + the JSON of their
/// sorted key list + each value followed by `,` + `}`; anything else as `JSON.stringify`.
fn serialize(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                serialize(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            // JavaScript sorts strings by UTF-16 code units.
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            out.push_str(
                &Value::from(keys.iter().map(|k| k.as_str()).collect::<Vec<_>>()).to_string(),
            );
            for key in keys {
                serialize(&map[key], out);
                out.push(',');
            }
            out.push('}');
        }
        // serde_json escapes strings as JSON.stringify does and prints integers alike.
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BalancerMaxis/multisig-ops BIPs/2024-W16/BIP-518-5.json (commit ea87b29b), exported by
    /// the Transaction Builder 1.16.3: a real file and the checksum the app put in it.
    const BALANCER_BIP_518_5: &str = r#"{
  "version": "1.0",
  "chainId": "1",
  "createdAt": 1703107040104,
  "meta": {
    "name": "Transactions Batch",
    "description": "",
    "txBuilderVersion": "1.16.3",
    "createdFromSafeAddress": "0x10A19e7eE7d7F8a52822f6817de8ea18204F2e4f",
    "createdFromOwnerAddress": "",
    "checksum": "0x1f440bb1b31ed23dce797e5957ac2a5749add1074f8540f0ff0a158e4b248003"
  },
  "transactions": [
    {
      "to": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
      "value": "0",
      "data": null,
      "contractMethod": {
        "inputs": [
          { "name": "to", "type": "address", "internalType": "address" },
          { "name": "value", "type": "uint256", "internalType": "uint256" }
        ],
        "name": "transfer",
        "payable": false
      },
      "contractInputsValues": {
        "to": "0x811912c19eEF91b9Dc3cA52fc426590cFB84FC86",
        "value": "29000000000"
      }
    }
  ]
}
"#;

    #[test]
    fn checksum_of_a_file_the_app_produced() {
        let file: Value = serde_json::from_str(BALANCER_BIP_518_5).unwrap();
        assert_eq!(
            checksum(&file),
            "0x1f440bb1b31ed23dce797e5957ac2a5749add1074f8540f0ff0a158e4b248003"
        );
        assert!(verify_checksum(&file).unwrap());
        let mut edited = file.clone();
        edited["transactions"][0]["value"] = Value::String("1".into());
        assert!(!verify_checksum(&edited).unwrap());
        // The name does not count (the app lets users rename batches).
        let mut renamed = file;
        renamed["meta"]["name"] = Value::String("other".into());
        assert!(verify_checksum(&renamed).unwrap());
    }

    #[test]
    fn checksum_of_the_apps_own_test_vector() {
        // apps/tx-builder/src/lib/checksum.test.js (its meta carries an empty checksum, which
        // addChecksum serializes; the expected value is the test's).
        let file = json!({
            "version": "1.0", "chainId": "4", "createdAt": 1646321521061u64,
            "meta": {
                "name": "test batch file", "txBuilderVersion": "1.4.0", "checksum": "",
                "createdFromSafeAddress": "0xDF8a1Ce35c9a6ACE153B4e0767942f1E2291a1Aa",
                "createdFromOwnerAddress": "0x49d4450977E2c95362C13D3a31a09311E0Ea26A6",
            },
            "transactions": [
                {
                    "to": "0x49d4450977E2c95362C13D3a31a09311E0Ea26A6", "value": "0",
                    "contractMethod": {
                        "inputs": [{ "internalType": "address", "name": "paramAddress", "type": "address" }],
                        "name": "testAddress", "payable": false,
                    },
                    "contractInputsValues": { "paramAddress": "0x49d4450977E2c95362C13D3a31a09311E0Ea26A6" },
                },
                {
                    "to": "0x49d4450977E2c95362C13D3a31a09311E0Ea26A6", "value": "0",
                    "contractMethod": {
                        "inputs": [{ "internalType": "bool", "name": "paramBool", "type": "bool" }],
                        "name": "testBool", "payable": false,
                    },
                    "contractInputsValues": { "paramAddress": "", "paramBool": "false" },
                },
                {
                    "to": "0x49d4450977E2c95362C13D3a31a09311E0Ea26A6", "value": "2000000000000000000",
                    "data": "0x42f4579000000000000000000000000049d4450977e2c95362c13d3a31a09311e0ea26a6",
                },
            ],
        });
        let mut serialized = String::new();
        let mut with_null_name = file.clone();
        with_null_name["meta"]["name"] = Value::Null;
        serialize(&with_null_name, &mut serialized);
        assert_eq!(
            to_0x_hex(keccak256(serialized.as_bytes()).as_slice()),
            "0x4ecbfd364aa6759983915644e73f8bd411e85a2dc306f252a387c2728c4db64c"
        );
    }

    #[test]
    fn serialization_matches_checksum_ts() {
        let mut out = String::new();
        serialize(
            &json!({"b": 1, "a": "x", "c": [true, null, {"z": "\"q\n"}]}),
            &mut out,
        );
        assert_eq!(out, r#"{["a","b","c"]"x",1,[true,null,{["z"]"\"q\n",}],}"#);
    }

    #[test]
    fn files_we_make_follow_the_schema_and_verify() {
        let meta = BatchMeta {
            name: "register".into(),
            description: String::new(),
            chain_id: 8453,
            created_at_ms: 1_700_000_000_000,
            safe: Some([0xab; 20]),
        };
        let tx = BuilderTransaction {
            call: Call::new([0xcd; 20], vec![1, 2]),
            method: "addOsImageHash",
            parameters: vec![Parameter {
                name: "osImageHash",
                ty: "bytes32",
            }],
            arguments: vec!["0x01".into()],
        };
        let file = batch_file(&meta, &[tx]);
        assert!(verify_checksum(&file).unwrap());
        assert_eq!(file["version"], "1.0");
        assert_eq!(file["chainId"], "8453");
        assert_eq!(file["createdAt"], 1_700_000_000_000u64);
        assert_eq!(file["meta"]["txBuilderVersion"], TX_BUILDER_VERSION);
        assert_eq!(
            file["meta"]["createdFromSafeAddress"],
            "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
        );
        let tx = &file["transactions"][0];
        assert_eq!(tx["value"], "0");
        assert_eq!(tx["data"], "0x0102");
        assert_eq!(tx["contractInputsValues"]["osImageHash"], "0x01");
        assert_eq!(tx["contractMethod"]["inputs"][0]["type"], "bytes32");
        assert_eq!(
            verify_checksum(&json!({})).unwrap_err().kind().as_str(),
            "invalid_batch_file"
        );
    }
}
