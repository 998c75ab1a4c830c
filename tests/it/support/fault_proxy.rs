//! A fault-injecting proxy between the chain source and anvil: it speaks just enough HTTP/1.1 to
//! take one JSON-RPC request per connection, and either forwards it (answering with
//! `Connection: close`) or fails it the way a network, a load balancer or a lagging node does.
#![allow(dead_code)] // each test area uses a different part

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// How requests fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Forward unchanged.
    None,
    /// Read the request, then close the connection without an answer.
    Drop,
    /// Read the request and never answer (the client's timeout ends it).
    Blackhole,
    /// Read the request, then reset the connection (RST).
    Reset,
    /// Answer with this HTTP status and a plain-text body, as a failing gateway does.
    Status(u16),
    /// Forward, but hold the answer back this long.
    Delay(Duration),
    /// Forward, then cut the JSON answer in half.
    GarbleJson,
    /// Forward, but answer as a node this many blocks behind: `eth_blockNumber` is the real head
    /// minus this, and blocks past that head are not found (`null`).
    HeadBehind(u64),
    /// Forward, but refuse an `eth_getLogs` over more than this many blocks as a provider
    /// does ("query returned more than 10000 results").
    LogRangeOver(u64),
}

struct State {
    fault: Fault,
    /// Requests still forwarded before `fault` applies (`None`: it applies now).
    passes_left: Option<u64>,
    requests: u64,
    /// `eth_getLogs` requests seen (refused ones included).
    log_requests: u64,
    /// JSON-RPC calls seen: one per request, or a batch's length.
    calls: u64,
}

/// A running proxy; stops when dropped.
pub(crate) struct FaultProxy {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on an ephemeral loopback port, forwarding to `upstream` (e.g. an anvil URL).
    pub(crate) async fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State {
            fault: Fault::None,
            passes_left: None,
            requests: 0,
            log_requests: 0,
            calls: 0,
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, upstream, Arc::clone(&shared)));
            }
        });
        FaultProxy {
            address,
            state,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Applies `fault` to every request from now on.
    pub(crate) fn set(&self, fault: Fault) {
        self.set_after(0, fault);
    }

    /// Forwards the next `passes` requests, then applies `fault` to every later one.
    pub(crate) fn set_after(&self, passes: u64, fault: Fault) {
        let mut state = self.state.lock().unwrap();
        state.fault = fault;
        state.passes_left = Some(passes);
    }

    /// Forwards everything again.
    pub(crate) fn heal(&self) {
        self.set(Fault::None);
    }

    /// Requests received so far.
    pub(crate) fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// `eth_getLogs` requests so far.
    pub(crate) fn log_requests(&self) -> u64 {
        self.state.lock().unwrap().log_requests
    }

    /// JSON-RPC calls so far: a batch request counts each call in it.
    pub(crate) fn calls(&self) -> u64 {
        self.state.lock().unwrap().calls
    }
}

/// The fault for the next request.
fn next_fault(state: &Mutex<State>) -> Fault {
    let mut state = state.lock().unwrap();
    state.requests += 1;
    match state.passes_left {
        Some(0) | None => state.fault.clone(),
        Some(left) => {
            state.passes_left = Some(left - 1);
            Fault::None
        }
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, state: Arc<Mutex<State>>) {
    let Some((head, body)) = read_message(&mut client).await else {
        return;
    };
    let call: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let log_span = (call["method"] == "eth_getLogs").then(|| {
        let filter = &call["params"][0];
        quantity(&filter["toBlock"]).saturating_sub(quantity(&filter["fromBlock"])) + 1
    });
    {
        let mut state = state.lock().unwrap();
        state.calls += call.as_array().map_or(1, |batch| batch.len() as u64);
        if log_span.is_some() {
            state.log_requests += 1;
        }
    }
    let answer = match next_fault(&state) {
        Fault::Drop => return,
        Fault::Blackhole => {
            // Until the client gives up and closes.
            let mut sink = [0u8; 1024];
            while client.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            return;
        }
        Fault::Reset => {
            let _ = client.set_zero_linger();
            return;
        }
        Fault::Status(status) => (status, format!("fault proxy: HTTP {status}").into_bytes()),
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            forward(upstream, &head, &body).await
        }
        Fault::GarbleJson => {
            let (status, answer) = forward(upstream, &head, &body).await;
            (status, answer[..answer.len() / 2].to_vec())
        }
        Fault::HeadBehind(blocks) => {
            let (status, answer) = forward(upstream, &head, &body).await;
            let lagging_head = real_head(upstream, &head).await.saturating_sub(blocks);
            (status, lagging(&body, &answer, lagging_head))
        }
        Fault::LogRangeOver(limit) if log_span.is_some_and(|span| span > limit) => {
            let error = serde_json::json!({
                "jsonrpc": "2.0",
                "id": call["id"],
                "error": {"code": -32005, "message": "query returned more than 10000 results"},
            });
            (200, serde_json::to_vec(&error).expect("JSON"))
        }
        Fault::None | Fault::LogRangeOver(_) => forward(upstream, &head, &body).await,
    };
    let (status, body) = answer;
    let response = format!(
        "HTTP/1.1 {status} Fault Proxy\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.write_all(&body).await;
    let _ = client.shutdown().await;
}

/// Reads one HTTP/1.1 message with a `content-length` body: its head (through the blank line)
/// and body. `None` if the peer closed first.
async fn read_message(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        assert!(buffer.len() < 64 << 10, "oversized HTTP head");
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    let length = header(&head, "content-length").map_or(0, |v| v.parse().expect("length"));
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Sends the request upstream on a fresh connection and returns the answer's status and body.
async fn forward(upstream: SocketAddr, head: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut request: String = head
        .trim_end()
        .lines()
        .filter(|line| {
            !line
                .split_once(':')
                .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("connection"))
        })
        .map(|line| format!("{line}\r\n"))
        .collect();
    request.push_str("connection: close\r\n\r\n");
    let mut stream = TcpStream::connect(upstream)
        .await
        .expect("connect upstream");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let (head, body) = read_message(&mut stream).await.expect("upstream answer");
    assert!(
        header(&head, "transfer-encoding").is_none(),
        "chunked upstream answers are not handled: {head}"
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body)
}

/// The upstream node's head, asked with the same HTTP head as the client's request.
async fn real_head(upstream: SocketAddr, head: &str) -> u64 {
    let request = r#"{"jsonrpc":"2.0","id":0,"method":"eth_blockNumber"}"#;
    let head = head
        .lines()
        .map(|line| match line.split_once(':') {
            Some((key, _)) if key.trim().eq_ignore_ascii_case("content-length") => {
                format!("content-length: {}", request.len())
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    let (_, answer) = forward(upstream, &head, request.as_bytes()).await;
    let answer: Value = serde_json::from_slice(&answer).expect("JSON-RPC answer");
    quantity(&answer["result"])
}

fn quantity(value: &Value) -> u64 {
    let hex = value.as_str().expect("hex quantity");
    u64::from_str_radix(hex.trim_start_matches("0x"), 16).expect("quantity")
}

/// The answer as a node whose head is `lagging_head` would give it: `eth_blockNumber` is that
/// head, and a block by number past it is `null` (requests and answers may be batches).
fn lagging(request: &[u8], answer: &[u8], lagging_head: u64) -> Vec<u8> {
    let as_list = |value: Value| match value {
        Value::Array(items) => items,
        single => vec![single],
    };
    let request: Value = serde_json::from_slice(request).expect("JSON-RPC request");
    let calls: Vec<(Value, Value)> = as_list(request)
        .into_iter()
        .map(|call| (call["id"].clone(), call))
        .collect();
    let mut answer: Value = serde_json::from_slice(answer).expect("JSON-RPC answer");
    let rewrite = |item: &mut Value| {
        // Errors (anvil has no eth_getHeaderByNumber) stay as they are.
        let Some((_, call)) = calls
            .iter()
            .find(|(id, _)| *id == item["id"] && item.get("result").is_some())
        else {
            return;
        };
        match call["method"].as_str() {
            Some("eth_blockNumber") => {
                item["result"] = Value::String(format!("{lagging_head:#x}"));
            }
            Some("eth_getBlockByNumber" | "eth_getHeaderByNumber")
                if call["params"][0].as_str().is_some_and(|n| {
                    n.starts_with("0x") && quantity(&call["params"][0]) > lagging_head
                }) =>
            {
                item["result"] = Value::Null;
            }
            _ => {}
        }
    };
    match &mut answer {
        Value::Array(items) => items.iter_mut().for_each(rewrite),
        single => rewrite(single),
    }
    serde_json::to_vec(&answer).expect("JSON")
}
