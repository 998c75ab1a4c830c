//! Runs the real `tee-verifier serve` binary on ephemeral ports for the service tests, with a real
//! tonic client and a real HTTP client.
#![allow(dead_code)] // each service test crate uses a different part

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tee_verifier::service::proto::{self, verifier_client::VerifierClient};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The gRPC service name, as health and reflection know it.
pub(crate) const SERVICE_NAME: &str = "tee_verifier.v1.Verifier";

/// A running `tee-verifier serve`; killed when dropped.
pub(crate) struct Service {
    child: Option<Child>,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Service {
    /// Starts `tee-verifier serve` on 127.0.0.1:0 (both ports) with `args`, and waits for its
    /// `listening grpc=… http=…` line. `TEE_VERIFIER_*` variables of the test environment are not
    /// passed on.
    pub(crate) fn start(args: &[&str]) -> Service {
        Service::start_under(&[], args)
    }

    /// [`Service::start`] through a launcher that execs the binary (e.g. `prlimit --nofile=128`),
    /// so the process (and its pid) is still the service.
    pub(crate) fn start_under(launcher: &[&str], args: &[&str]) -> Service {
        let binary = env!("CARGO_BIN_EXE_tee-verifier");
        let mut command = match launcher.split_first() {
            Some((program, launcher_args)) => {
                let mut command = Command::new(program);
                command.args(launcher_args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .arg("serve")
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TEE_VERIFIER_") {
                command.env_remove(name);
            }
        }
        let mut child = command.spawn().expect("spawn tee-verifier serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = sender.send(line);
            // Keep draining so the child never blocks on a full pipe.
            let _ = std::io::copy(&mut reader.take(u64::MAX), &mut std::io::sink());
        });
        let line = match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("listening ") => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve did not report its addresses ({other:?}); stderr:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        let address = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix(key))
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        Service {
            grpc: address("grpc="),
            http: address("http="),
            child: Some(child),
            stderr: log,
        }
    }

    /// Opens WatchRegistry asking for the initial snapshot; returns the stream and that snapshot.
    pub(crate) async fn watch_from_snapshot(
        &self,
    ) -> (
        tonic::Streaming<proto::RegistryEvent>,
        proto::RegistrySnapshot,
    ) {
        let mut watch = self
            .client()
            .await
            .watch_registry(proto::WatchRegistryRequest {
                send_snapshot: true,
            })
            .await
            .expect("watch")
            .into_inner();
        let first = watch.message().await.expect("stream").expect("an event");
        let Some(proto::registry_event::Event::Snapshot(snapshot)) = first.event else {
            panic!("first event {first:?}")
        };
        (watch, snapshot)
    }

    pub(crate) async fn client(&self) -> VerifierClient<Channel> {
        VerifierClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("connect gRPC")
            .max_decoding_message_size(64 << 20)
    }

    pub(crate) async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .expect("uri")
            .connect()
            .await
            .expect("connect gRPC")
    }

    /// The gRPC health status of `service` ("" = the whole server).
    pub(crate) async fn health(&self, service: &str) -> ServingStatus {
        let mut health = HealthClient::new(self.channel().await);
        let response = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("health check")
            .into_inner();
        ServingStatus::try_from(response.status).expect("known status")
    }

    /// Waits until health reports `want` for the server and the service.
    pub(crate) async fn wait_health(&self, want: ServingStatus, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.health("").await == want && self.health(SERVICE_NAME).await == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "health did not become {want:?} within {within:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// GET; returns the status code and body.
    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::Client::new()
            .get(self.url(path))
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// POSTs a JSON body; returns the status code and the parsed JSON answer.
    pub(crate) async fn post_json(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        (status, json)
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The process's peak resident set so far (`VmHWM`), in KiB.
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .expect("VmHWM")
    }

    /// Sends SIGTERM and waits (at most `within`) for the process to exit.
    pub(crate) fn terminate(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "serve did not exit within {within:?} of SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` until it returns `Some`, failing after `within`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `text` to a fresh file in `dir` and returns its path as a string.
pub(crate) fn write_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.to_str().expect("utf-8 path").to_owned()
}

/// Reads a line-oriented child stream fully (for `--help` and similar one-shot runs).
pub(crate) fn run_cli(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tee-verifier"))
        .args(args)
        .output()
        .expect("run tee-verifier");
    let mut stdout = String::new();
    let _ = output.stdout.as_slice().read_to_string(&mut stdout);
    (
        output.status.code().unwrap_or(-1),
        stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A webhook body with every field auth-eth requires, all empty: all zeros once left-padded.
pub(crate) const ZERO_BOOT_INFO: &str = r#"{"appId":"","composeHash":"","instanceId":"","deviceId":"","mrAggregated":"","osImageHash":""}"#;
