//! Reading a webhook body within its budget: a `Content-Length` over the limit is refused (413)
//! before a byte of the body is read, a body without one is read only up to the limit, and a
//! body that has not arrived within the request timeout is refused (408).

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt as _;
use std::time::Duration;

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    /// 413 (too large) or 408 (too slow); 400 if the body broke off.
    pub status: StatusCode,
    pub reason: String,
}

/// The whole body, if it fits in `limit` bytes and arrives within `timeout`.
pub(super) async fn read_bounded(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Refusal> {
    let too_large = || Refusal {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        reason: format!("the body is larger than {limit} bytes"),
    };
    if let Some(announced) = headers.get(header::CONTENT_LENGTH) {
        // hyper has already refused a Content-Length that is not a number.
        let announced = announced
            .to_str()
            .ok()
            .and_then(|text| text.parse::<u64>().ok());
        if announced.is_none_or(|length| length > limit as u64) {
            return Err(too_large());
        }
    }
    let read = http_body_util::Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(Refusal {
            status: StatusCode::REQUEST_TIMEOUT,
            reason: format!("the body did not arrive within {} ms", timeout.as_millis()),
        }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(error)) => Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            reason: format!("reading the body failed: {error}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_length: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(length) = content_length {
            headers.insert(header::CONTENT_LENGTH, length.parse().unwrap());
        }
        headers
    }

    #[tokio::test]
    async fn a_content_length_over_the_limit_is_refused_without_reading() {
        // A body that would stall forever: refusing it must not poll it.
        let stalled =
            Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let refusal = read_bounded(
            &headers(Some("9223372036854775808")),
            stalled,
            10,
            Duration::from_secs(3600),
        )
        .await
        .unwrap_err();
        assert_eq!(refusal.status, StatusCode::PAYLOAD_TOO_LARGE);
        let refusal = read_bounded(
            &headers(Some("11")),
            Body::from("x"),
            10,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert_eq!(refusal.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_body_without_length_is_read_up_to_the_limit_only() {
        let refusal = read_bounded(
            &headers(None),
            Body::from("x".repeat(11)),
            10,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert_eq!(refusal.status, StatusCode::PAYLOAD_TOO_LARGE);
        let body = read_bounded(
            &headers(Some("10")),
            Body::from("x".repeat(10)),
            10,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(body.len(), 10);
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let stalled =
            Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let refusal = read_bounded(&headers(None), stalled, 10, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(refusal.status, StatusCode::REQUEST_TIMEOUT);
    }
}
