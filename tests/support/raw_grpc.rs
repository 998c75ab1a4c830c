//! Unary gRPC calls with bytes already encoded and answers left encoded: what a generic client
//! such as grpcurl does (it encodes from a descriptor), and what a load generator wants (each
//! request encoded once, each answer decoded only as far as it checks).
#![allow(dead_code)] // each user needs a different part

use prost::bytes::{Buf as _, BufMut as _, Bytes};
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

/// Calls `method` (`/package.Service/Method`) with an encoded request; returns the encoded answer.
pub async fn unary(
    client: &mut Grpc<Channel>,
    method: PathAndQuery,
    request: Bytes,
) -> Result<Bytes, Status> {
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    client
        .unary(tonic::Request::new(request), method, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Passes message bytes through unchanged, both ways.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

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
