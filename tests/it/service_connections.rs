//! `tee-verifier serve` under hostile connections and bodies: an idle flood under a low open-file
//! limit, slow and idle sockets, a `Content-Length` of 2^63, an 11 MB webhook body of 2.8 M
//! `advisoryIds`, gRPC messages over their method's limit and malformed protobuf, spoken with raw
//! TCP and a raw HTTP/2 client so nothing in a client library smooths them over.

use crate::support::service::Service;
use axum::body::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tee_verifier::service::proto;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// Enough for any answer here on a loaded machine; the old behaviour was to hang forever.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// Reads until the peer closes (or `within` passes); returns what arrived and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(within, read_all).await.is_ok();
    (received, closed)
}

/// The status line's code of a raw HTTP/1.1 response.
fn status_code(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test]
async fn an_idle_flood_under_a_low_file_limit_leaves_health_answering() {
    // Timeouts far beyond the test: only making room by closing idle connections can let health
    // through.
    let server = Service::start_under(
        &["prlimit", "--nofile=128:128"],
        &["--header-read-timeout", "5m", "--idle-timeout", "5m"],
    );
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(10))
        .await;
    let mut flood = Vec::new();
    for port in [server.http, server.grpc] {
        for _ in 0..100 {
            flood.push(TcpStream::connect(port).await.expect("connect"));
        }
    }
    // Let the service take in what the backlog holds (and run out of descriptors doing so).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .expect("fd dir")
        .count();
    eprintln!("open descriptors of the service under the flood: {open} of 128");
    assert!(
        open > 100,
        "the flood did not exhaust the descriptors ({open})"
    );

    for round in 0..3 {
        let (code, body) = tokio::time::timeout(ANSWER_WITHIN, server.get("/healthz"))
            .await
            .unwrap_or_else(|_| panic!("/healthz hung in round {round}"));
        assert_eq!(code, 200, "{body}");
        let status = tokio::time::timeout(ANSWER_WITHIN, server.health(""))
            .await
            .unwrap_or_else(|_| panic!("gRPC health hung in round {round}"));
        assert_eq!(status, ServingStatus::Serving);
    }
    drop(flood);
}

#[tokio::test]
async fn the_connection_limit_makes_room_by_closing_the_longest_idle() {
    let server = Service::start(&[
        "--max-connections",
        "4",
        "--header-read-timeout",
        "5m",
        "--idle-timeout",
        "5m",
    ]);
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(server.http).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, _) = tokio::time::timeout(ANSWER_WITHIN, server.get("/healthz"))
        .await
        .expect("/healthz at the connection limit");
    assert_eq!(code, 200);
    // The first idle connection was the one closed.
    let (_, closed) = read_until_closed(&mut idle[0], ANSWER_WITHIN).await;
    assert!(closed, "the longest-idle connection is still open");
}

#[tokio::test]
async fn silent_slow_and_idle_connections_are_closed() {
    let server = Service::start(&["--header-read-timeout", "1s", "--idle-timeout", "2s"]);
    for port in [server.http, server.grpc] {
        // Connects and says nothing.
        let mut silent = TcpStream::connect(port).await.expect("connect");
        let (_, closed) = read_until_closed(&mut silent, ANSWER_WITHIN).await;
        assert!(closed, "a silent connection to {port} was held");
    }
    // Headers that never end (slowloris).
    let mut slow = TcpStream::connect(server.http).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut slow, ANSWER_WITHIN).await;
    assert!(closed, "partial headers were waited for forever");
    // A kept-alive connection that went quiet after its answer.
    let mut quiet = TcpStream::connect(server.http).await.expect("connect");
    quiet
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut quiet, ANSWER_WITHIN).await;
    assert!(closed, "an idle kept-alive connection was held");
    assert_eq!(status_code(&answer), Some(200));
}

#[tokio::test]
async fn a_content_length_over_the_limit_is_413_before_the_body() {
    let server = Service::start(&[]);
    for length in ["9223372036854775808", "65537"] {
        let mut stream = TcpStream::connect(server.http).await.expect("connect");
        let head = format!(
            "POST /bootAuth/app HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // Not one byte of the body is sent: the answer cannot depend on reading it.
        let (response, closed) = read_until_closed(&mut stream, ANSWER_WITHIN).await;
        assert!(
            closed,
            "the connection stayed open for a body it will not read"
        );
        assert_eq!(
            status_code(&response),
            Some(413),
            "{}",
            String::from_utf8_lossy(&response)
        );
        assert!(String::from_utf8_lossy(&response).contains("\"isAllowed\":false"));
    }
    // A body within the limit is still read and answered.
    let (code, _) = server
        .post_json("/bootAuth/app", crate::support::service::ZERO_BOOT_INFO)
        .await;
    assert_eq!(code, 200);
}

/// auth-eth's body with `count` advisory IDs: about 4 bytes each.
fn advisory_flood(count: usize) -> Vec<u8> {
    let mut body = br#"{"appId":"0x01","tcbStatus":"UpToDate","advisoryIds":["#.to_vec();
    body.reserve(count * 4);
    for index in 0..count {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(br#""a""#);
    }
    body.extend_from_slice(b"]}");
    body
}

/// Sends `body` chunked (no Content-Length) while reading; returns the status of the answer.
async fn post_chunked(address: SocketAddr, body: &[u8]) -> Option<u16> {
    let stream = TcpStream::connect(address).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let send = async {
        let head = "POST /bootAuth/app HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        writer.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(64 << 10) {
            writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            writer.write_all(chunk).await?;
            writer.write_all(b"\r\n").await?;
        }
        writer.write_all(b"0\r\n\r\n").await
    };
    let receive = async {
        let mut response = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buffer[..n]);
            if response.windows(4).any(|window| window == b"\r\n\r\n") {
                break;
            }
        }
        response
    };
    // The server may stop reading (and reset) long before the body is sent.
    let (_, response) = tokio::join!(send, receive);
    status_code(&response)
}

#[tokio::test]
async fn an_11_mb_body_of_2_8_m_advisory_ids_is_refused_in_bounded_memory() {
    let server = Service::start(&[]);
    let (code, _) = server
        .post_json("/bootAuth/app", crate::support::service::ZERO_BOOT_INFO)
        .await;
    assert_eq!(code, 200);
    let body = advisory_flood(2_800_000);
    assert!(body.len() > 11_000_000);
    let before = server.peak_rss_kib();

    // Eight at once, announced by Content-Length, then eight sent chunked.
    let announced = (0..8).map(|_| {
        let body = body.clone();
        let url = server.url("/bootAuth/app");
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            // The 413 comes before the body is read; the client may see it or, mid-upload, the
            // connection closing under it.
            response.map(|response| response.status().as_u16()).ok()
        }
    });
    let mut codes = futures::future::join_all(announced).await;
    let chunked = (0..8).map(|_| post_chunked(server.http, &body));
    codes.extend(futures::future::join_all(chunked).await);
    eprintln!("answers to the 16 bodies: {codes:?}");
    assert!(
        codes.iter().all(|code| matches!(code, None | Some(413))),
        "{codes:?}"
    );
    assert!(
        codes.contains(&Some(413)),
        "no refusal was ever read: {codes:?}"
    );
    let (code, _) = tokio::time::timeout(ANSWER_WITHIN, server.get("/healthz"))
        .await
        .expect("/healthz after the flood");
    assert_eq!(code, 200);

    let after = server.peak_rss_kib();
    let growth_kib = after.saturating_sub(before);
    eprintln!(
        "peak RSS before {before} KiB, after 16 bodies of {} bytes: {after} KiB (+{growth_kib} KiB)",
        body.len()
    );
    // Each body costs at most its 64 KiB budget plus the connection's read buffer.
    assert!(growth_kib < 16 << 10, "peak RSS grew by {growth_kib} KiB");
}

/// One unary gRPC call over a raw HTTP/2 connection: `frames` are sent as they are (gRPC
/// prefixes included) and the body is left open; returns `grpc-status` and `grpc-message`.
async fn raw_grpc(address: SocketAddr, path: &str, frames: Vec<u8>) -> (Code, String) {
    let tcp = TcpStream::connect(address).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = axum::http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).expect("send");
    send.send_data(Bytes::from(frames), false).expect("data");
    let response = tokio::time::timeout(ANSWER_WITHIN, response)
        .await
        .expect("an answer without the rest of the body")
        .expect("response");
    let (parts, mut body) = response.into_parts();
    let trailers = match parts.headers.get("grpc-status") {
        Some(_) => parts.headers,
        None => {
            while let Some(data) = body.data().await {
                let data = data.expect("data");
                let _ = body.flow_control().release_capacity(data.len());
            }
            body.trailers()
                .await
                .expect("trailers")
                .expect("grpc trailers")
        }
    };
    let code = trailers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(Code::from_i32)
        .expect("grpc-status");
    let message = trailers
        .get("grpc-message")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    (code, message)
}

fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument_and_oversized_is_resource_exhausted() {
    let server = Service::start(&[]);
    // Field 1 (boot_info), length-delimited, with a length varint that never ends.
    for path in [
        "/tee_verifier.v1.Verifier/IsAppAllowed",
        "/tee_verifier.v1.Verifier/Verify",
    ] {
        let (code, message) = raw_grpc(server.grpc, path, grpc_frame(&[0x0a, 0xff])).await;
        assert_eq!(code, Code::InvalidArgument, "{path}: {message}");
    }
    // Only the prefix is sent: the refusal cannot have waited for (or buffered) the message.
    let announce = |length: u32| {
        let mut prefix = vec![0];
        prefix.extend_from_slice(&length.to_be_bytes());
        prefix
    };
    for (path, length) in [
        ("/tee_verifier.v1.Verifier/IsAppAllowed", 65_537),
        ("/tee_verifier.v1.Verifier/IsKmsAllowed", 16 << 20),
        ("/tee_verifier.v1.Verifier/CheckMeasurement", 1 << 20),
        ("/tee_verifier.v1.Verifier/Verify", (16 << 20) + 1),
        ("/grpc.health.v1.Health/Check", u32::MAX),
    ] {
        let (code, message) = raw_grpc(server.grpc, path, announce(length)).await;
        assert_eq!(code, Code::ResourceExhausted, "{path} {length}: {message}");
    }
    // Within its limit, Verify still takes a message far larger than a boot info.
    let (code, message) = raw_grpc(
        server.grpc,
        "/tee_verifier.v1.Verifier/Verify",
        grpc_frame(&vec![0; 1 << 20]),
    )
    .await;
    assert_eq!(code, Code::InvalidArgument, "1 MiB of zeros: {message}");
}

#[tokio::test]
async fn a_16_mb_is_app_allowed_is_refused_in_bounded_memory() {
    let server = Service::start(&[]);
    let mut client = server.client().await;
    let before = server.peak_rss_kib();
    let huge = proto::IsAppAllowedRequest {
        boot_info: Some(proto::BootInfo {
            advisory_ids: vec!["a".repeat(1 << 10); 16 << 10],
            ..Default::default()
        }),
    };
    for _ in 0..4 {
        let status = client
            .is_app_allowed(huge.clone())
            .await
            .expect_err("over a boot info's size");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    }
    let after = server.peak_rss_kib();
    let growth_kib = after.saturating_sub(before);
    eprintln!("peak RSS before {before} KiB, after 4 IsAppAllowed of 16 MiB: {after} KiB (+{growth_kib} KiB)");
    assert!(growth_kib < 16 << 10, "peak RSS grew by {growth_kib} KiB");
}
