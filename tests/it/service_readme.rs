//! The README's grpcurl and curl examples, run against `serve` on its embedded default registry
//! the way those tools run them: each grpcurl `-d` JSON is parsed with the service's descriptors
//! (protobuf's JSON mapping, as grpcurl does from reflection), sent, and its answer decoded; each
//! curl body is posted and compared with the answer the README prints under it.

use crate::support::samples;
use crate::support::service;

use base64::Engine as _;
use prost::bytes::{Buf as _, BufMut as _, Bytes};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, SerializeOptions};
use serde_json::Value;
use service::Service;
use std::time::Duration;
use tee_verifier::service::proto;
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;
use tonic_health::pb::health_check_response::ServingStatus;

/// The Nitro sample the README's Verify example stands for (`doc.cbor`), and its time.
const NITRO_SAMPLE: &str = "nitro/signal_test_cose_sign1_02.cbor";
const NITRO_SAMPLE_NOW: &str = "1705431295";

/// One shell command of the README's service block, continuation lines joined, with the comment
/// line that follows it (the printed answer), if any.
struct Example {
    command: String,
    printed: Option<String>,
}

fn readme_examples() -> Vec<Example> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let block = readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .find(|block| block.contains("grpcurl -plaintext"))
        .expect("a sh block with grpcurl examples");
    let mut examples: Vec<Example> = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        if let Some(printed) = line.strip_prefix("# ") {
            if let Some(last) = examples.last_mut() {
                last.printed = Some(printed.to_owned());
            }
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line.trim());
                if !pending.trim().is_empty() {
                    examples.push(Example {
                        command: std::mem::take(&mut pending).trim().to_owned(),
                        printed: None,
                    });
                }
                pending.clear();
            }
        }
    }
    examples
}

/// The `-d` argument of a command: '…' as is, "…" with `\"` unescaped and the README's one
/// command substitution (`$(base64 -w0 doc.cbor)`) replaced by the sample's base64.
fn data_argument(command: &str, document_base64: &str) -> Option<String> {
    let (_, rest) = command.split_once(" -d ")?;
    let quote = rest.chars().next()?;
    let body = &rest[1..];
    let end = match quote {
        '\'' => body.find('\'')?,
        '"' => {
            let mut escaped = false;
            body.char_indices()
                .find(|&(_, c)| {
                    let closes = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                })?
                .0
        }
        _ => panic!("unquoted -d in {command}"),
    };
    let data = &body[..end];
    Some(match quote {
        '"' => data
            .replace("\\\"", "\"")
            .replace("$(base64 -w0 doc.cbor)", document_base64),
        _ => data.to_owned(),
    })
}

fn method(pool: &DescriptorPool, full_name: &str) -> MethodDescriptor {
    let (service, method) = full_name.rsplit_once('/').expect("service/method");
    pool.get_service_by_name(service)
        .unwrap_or_else(|| panic!("no service {service}"))
        .methods()
        .find(|candidate| candidate.name() == method)
        .unwrap_or_else(|| panic!("no method {full_name}"))
}

/// Encodes `json` as the method's request, calls it, and returns the answer as JSON (fields
/// at their default values included with `-emit-defaults`, as grpcurl prints them).
async fn call_as_grpcurl(
    client: &mut Grpc<Channel>,
    method: &MethodDescriptor,
    json: &str,
    emit_defaults: bool,
) -> Value {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let request = DynamicMessage::deserialize(method.input(), &mut deserializer)
        .unwrap_or_else(|e| panic!("{}: {json}: {e}", method.full_name()));
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    client.ready().await.expect("channel ready");
    let answer = client
        .unary(
            tonic::Request::new(Bytes::from(request.encode_to_vec())),
            PathAndQuery::try_from(path).expect("path"),
            RawCodec,
        )
        .await
        .unwrap_or_else(|status| panic!("{}: {status}", method.full_name()))
        .into_inner();
    let answer = DynamicMessage::decode(method.output(), answer).expect("decodable answer");
    let options = SerializeOptions::new().skip_default_fields(!emit_defaults);
    answer
        .serialize_with_options(serde_json::value::Serializer, &options)
        .expect("answer as JSON")
}

/// Passes message bytes through unchanged both ways: grpcurl's encoding is done above, from the
/// descriptors.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, buffer: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buffer.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buffer.copy_to_bytes(buffer.remaining())))
    }
}

#[tokio::test]
async fn readme_service_examples_work_as_written() {
    let dir = samples::samples_dir();
    let document = std::fs::read(dir.join(NITRO_SAMPLE)).expect("sample");
    let document_base64 = base64::engine::general_purpose::STANDARD.encode(&document);

    let server = Service::start(&["--dangerous-fixed-now", NITRO_SAMPLE_NOW]);
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(10))
        .await;
    let mut pool = DescriptorPool::new();
    for set in [
        proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        pool.decode_file_descriptor_set(set).expect("descriptors");
    }
    let channel = Channel::from_shared(format!("http://{}", server.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = Grpc::new(channel);

    let mut answered = Vec::new();
    for example in readme_examples() {
        let words: Vec<&str> = example.command.split_whitespace().collect();
        match words.first().copied() {
            Some("grpcurl") => {
                let Some(data) = data_argument(&example.command, &document_base64) else {
                    assert_eq!(words.last(), Some(&"list"), "{}", example.command);
                    continue;
                };
                let name = words.last().expect("method");
                let emit_defaults = words.contains(&"-emit-defaults");
                let answer =
                    call_as_grpcurl(&mut client, &method(&pool, name), &data, emit_defaults).await;
                match *name {
                    "tee_verifier.v1.Verifier/Verify" => {
                        assert_eq!(answer["verified"], true, "{answer}");
                        assert_eq!(answer["attested"]["platform"], "PLATFORM_NITRO");
                    }
                    "grpc.health.v1.Health/Check" => assert_eq!(answer["status"], "SERVING"),
                    // The embedded default registry is empty.
                    "tee_verifier.v1.Verifier/IsAppAllowed" => assert_eq!(
                        answer,
                        serde_json::json!({"isAllowed": false, "reason": "App not registered",
                            "block": "0", "gatewayAppId": ""})
                    ),
                    "tee_verifier.v1.Verifier/CheckMeasurement" => assert_eq!(
                        answer,
                        serde_json::json!({"registered": false, "block": "0", "pending": [],
                            "pendingError": ""})
                    ),
                    other => panic!("no check for the README's {other} example"),
                }
                answered.push(name.to_string());
            }
            Some("curl") if example.command.contains("/bootAuth/") => {
                let path = words
                    .iter()
                    .find_map(|word| word.strip_prefix("127.0.0.1:8000"))
                    .expect("a path on the README's HTTP address");
                let body = data_argument(&example.command, &document_base64).expect("-d");
                let (code, answer) = server.post_json(path, &body).await;
                assert_eq!(code, 200, "{answer}");
                let printed: Value =
                    serde_json::from_str(example.printed.as_deref().expect("printed answer"))
                        .expect("printed answer is JSON");
                assert_eq!(answer, printed, "{}", example.command);
                answered.push(path.to_owned());
            }
            Some("curl") => {
                let path = words
                    .iter()
                    .find_map(|word| word.strip_prefix("127.0.0.1:8000"))
                    .expect("a path on the README's HTTP address");
                let (code, text) = server.get(path).await;
                assert_eq!(code, 200, "{text}");
                assert!(text.contains("tee_verifier_"), "{text}");
                answered.push(path.to_owned());
            }
            _ => panic!(
                "unexpected line in the README's service block: {}",
                example.command
            ),
        }
    }
    assert_eq!(
        answered,
        [
            "tee_verifier.v1.Verifier/IsAppAllowed",
            "tee_verifier.v1.Verifier/CheckMeasurement",
            "tee_verifier.v1.Verifier/Verify",
            "grpc.health.v1.Health/Check",
            "/bootAuth/app",
            "/metrics",
        ]
    );
}
