//! Per-method gRPC message limits, enforced on the wire before tonic buffers a message: each
//! message's 5-byte prefix announces its length, and a length over the method's limit ends the
//! request with RESOURCE_EXHAUSTED before any of the message is held. A body that has not fully
//! arrived within the request timeout ends with DEADLINE_EXCEEDED (a stalled upload holds no
//! connection forever).

use super::config::Limits;
use super::listener::PrepareRequest;
use axum::body::{Body, Bytes};
use http_body::Frame;
use hyper::body::Incoming;
use hyper::Request;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::Status;

/// The methods whose messages may carry evidence (`Explain` explains a boot info or verified
/// evidence); every other message is at most a boot info's size.
const EVIDENCE_PATHS: [&str; 2] = [
    "/tee_verifier.v1.Verifier/Verify",
    "/tee_verifier.v1.Verifier/Explain",
];

/// The largest message `path` accepts: evidence for `Verify` and `Explain`, a boot info's size
/// for the rest (boot info RPCs, lookups, snapshots, health, reflection).
pub(super) fn message_limit(path: &str, limits: &Limits) -> usize {
    if EVIDENCE_PATHS.contains(&path) {
        limits.max_request_bytes
    } else {
        limits.max_boot_info_bytes
    }
}

/// Wraps each gRPC request body in a [`BudgetedBody`] with its method's limit.
pub(super) fn prepare(limits: &Limits) -> PrepareRequest {
    let limits = limits.clone();
    Arc::new(move |request: Request<Incoming>| {
        let limit = message_limit(request.uri().path(), &limits);
        let timeout = limits.request_timeout;
        request.map(|body| Body::new(BudgetedBody::new(body, limit, timeout)))
    })
}

/// Length of the gRPC message prefix: a compression flag and a big-endian u32 length.
const PREFIX_LEN: usize = 5;

/// A request body checked message by message against a length limit, within a deadline.
pub(super) struct BudgetedBody<B> {
    inner: B,
    limit: usize,
    /// Prefix bytes of the current message seen so far.
    prefix: [u8; PREFIX_LEN],
    prefix_seen: usize,
    /// Payload bytes of the current message still to come.
    payload_left: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    done: bool,
}

impl<B> BudgetedBody<B> {
    pub(super) fn new(inner: B, limit: usize, timeout: Duration) -> Self {
        BudgetedBody {
            inner,
            limit,
            prefix: [0; PREFIX_LEN],
            prefix_seen: 0,
            payload_left: 0,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            done: false,
        }
    }

    /// Walks `data` through the message framing; an error names the first message over the
    /// limit.
    fn check(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skip = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                data = &data[skip..];
                self.payload_left -= skip as u64;
                continue;
            }
            let take = (PREFIX_LEN - self.prefix_seen).min(data.len());
            self.prefix[self.prefix_seen..self.prefix_seen + take].copy_from_slice(&data[..take]);
            self.prefix_seen += take;
            data = &data[take..];
            if self.prefix_seen == PREFIX_LEN {
                self.prefix_seen = 0;
                let [_, a, b, c, d] = self.prefix;
                let length = u32::from_be_bytes([a, b, c, d]);
                if u64::from(length) > self.limit as u64 {
                    return Err(Status::resource_exhausted(format!(
                        "a message of {length} bytes is over this method's limit of {} bytes",
                        self.limit
                    )));
                }
                self.payload_left = u64::from(length);
            }
        }
        Ok(())
    }
}

impl<B> http_body::Body for BudgetedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.done = true;
            let timeout = self.timeout;
            return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                "the request did not arrive within {} ms",
                timeout.as_millis()
            )))));
        }
        let frame = match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            None => {
                self.done = true;
                return Poll::Ready(None);
            }
            Some(Err(error)) => {
                self.done = true;
                return Poll::Ready(Some(Err(Status::from_error(error.into()))));
            }
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            if let Err(status) = self.check(data) {
                self.done = true;
                return Poll::Ready(Some(Err(status)));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    fn message(length: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.resize(PREFIX_LEN + length as usize, 0xab);
        bytes
    }

    type Chunks =
        futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>>;

    fn body_of(
        chunks: Vec<Vec<u8>>,
        limit: usize,
    ) -> BudgetedBody<http_body_util::StreamBody<Chunks>> {
        let frames: Vec<_> = chunks
            .into_iter()
            .map(|chunk| Ok(Frame::data(Bytes::from(chunk))))
            .collect();
        BudgetedBody::new(
            http_body_util::StreamBody::new(futures::stream::iter(frames)),
            limit,
            Duration::from_secs(5),
        )
    }

    #[tokio::test]
    async fn messages_within_the_limit_pass_whatever_the_chunking() {
        let mut bytes = message(10);
        bytes.extend(message(0));
        bytes.extend(message(10));
        // Split everywhere, including inside prefixes.
        let chunks = bytes.chunks(3).map(<[u8]>::to_vec).collect();
        let collected = body_of(chunks, 10)
            .collect()
            .await
            .expect("within the limit");
        assert_eq!(collected.to_bytes(), bytes);
    }

    #[tokio::test]
    async fn a_message_announced_over_the_limit_is_refused_from_its_prefix() {
        let mut bytes = message(4);
        // Only the prefix of the second message: the refusal comes before its payload.
        bytes.extend_from_slice(&[0, 0, 0, 0, 11]);
        let chunks = bytes.chunks(2).map(<[u8]>::to_vec).collect();
        let status = body_of(chunks, 10)
            .collect()
            .await
            .expect_err("over the limit");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        let huge = body_of(vec![vec![0, 0xff, 0xff, 0xff, 0xff]], usize::MAX >> 40)
            .collect()
            .await
            .expect_err("4 GiB announced");
        assert_eq!(huge.code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn a_body_that_stalls_ends_at_the_deadline() {
        let stalled = http_body_util::StreamBody::new(tokio_stream::pending::<
            Result<Frame<Bytes>, std::convert::Infallible>,
        >());
        let body = BudgetedBody::new(stalled, 10, Duration::from_millis(100));
        let status = body.collect().await.expect_err("stalled");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    }

    #[test]
    fn verify_takes_evidence_and_everything_else_a_boot_info() {
        let limits = Limits {
            max_request_bytes: 1000,
            max_boot_info_bytes: 10,
            max_concurrency: 1,
            verify_workers: 1,
            request_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(1),
        };
        for path in EVIDENCE_PATHS {
            assert_eq!(message_limit(path, &limits), 1000, "{path}");
        }
        for path in [
            "/tee_verifier.v1.Verifier/IsAppAllowed",
            "/tee_verifier.v1.Verifier/IsKmsAllowed",
            "/grpc.health.v1.Health/Check",
            "/tee_verifier.v1.Verifier/VerifyX",
        ] {
            assert_eq!(message_limit(path, &limits), 10, "{path}");
        }
    }
}
