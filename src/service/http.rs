//! The HTTP side: a drop-in for dstack's KMS auth webhook (auth-eth: `POST /bootAuth/app`,
//! `POST /bootAuth/kms`, `GET /`), plus `GET /metrics` and `GET /healthz`.
//!
//! Webhook semantics kept exactly: the body is the camelCase boot info (hex with or without 0x,
//! left-padded; extra fields such as `teeVariant` ignored), the answer is HTTP 200
//! `{"isAllowed","reason","gatewayAppId"}`, and any failure to answer (stale view, RPC down,
//! deadline) is HTTP 200 `{"isAllowed":false,"reason":"authorization backend unavailable"}`.
//! A body that is not a boot info is HTTP 400 with `isAllowed:false` and the parse error.

use super::core::{Answer, Core};
use super::metrics::Method;
use super::monitor::RegistryStatus;
use super::webhook_body::read_bounded;
use crate::boot_info::from_webhook_body;
use crate::encoding::to_0x_hex;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use std::sync::Arc;
use tonic::{Code, Status};

/// auth-eth's reason when it cannot reach its backend; the KMS denies the boot.
pub(super) const BACKEND_UNAVAILABLE: &str = "authorization backend unavailable";

/// The reason of a 400: auth-eth's answer to a body its request schema refuses (the detail is
/// logged at debug level).
const INVALID_REQUEST: &str = "invalid authorization request";

/// What `GET /` reports about the chain source (None for file sources).
#[derive(Clone, Debug, Default)]
pub(super) struct SourceInfo {
    pub kms_contract: Option<String>,
    /// Scheme and host only: RPC URLs often carry an API key.
    pub eth_rpc_url: Option<String>,
}

#[derive(Clone)]
struct HttpState {
    core: Arc<Core>,
    source: Arc<SourceInfo>,
}

pub(super) fn router(core: Arc<Core>, source: SourceInfo) -> Router {
    // Bodies are read by `webhook_body::read_bounded`; this only backs it up.
    let body_limit = core.limits.max_boot_info_bytes;
    Router::new()
        .route("/", get(service_info))
        .route("/bootAuth/app", post(boot_auth_app))
        .route("/bootAuth/kms", post(boot_auth_kms))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(HttpState {
            core,
            source: Arc::new(source),
        })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BootAuthResponse {
    is_allowed: bool,
    reason: String,
    gateway_app_id: String,
}

#[derive(Clone, Copy)]
enum Question {
    App,
    Kms,
}

async fn boot_auth_app(State(state): State<HttpState>, request: Request) -> Response {
    read_then_answer(&state.core, Question::App, request).await
}

async fn boot_auth_kms(State(state): State<HttpState>, request: Request) -> Response {
    read_then_answer(&state.core, Question::Kms, request).await
}

/// Reads the body within a boot info's budget, then answers; a body refused unread is
/// `isAllowed:false` with the refusal's status (413 too large, 408 too slow).
async fn read_then_answer(core: &Core, question: Question, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let limits = &core.limits;
    match read_bounded(
        &parts.headers,
        body,
        limits.max_boot_info_bytes,
        limits.request_timeout,
    )
    .await
    {
        Ok(body) => boot_auth(core, question, &body).await,
        Err(refusal) => {
            let response = BootAuthResponse {
                is_allowed: false,
                reason: refusal.reason,
                gateway_app_id: String::new(),
            };
            // The rest of the body is never read: the connection cannot carry another request.
            (
                refusal.status,
                [(header::CONNECTION, "close")],
                Json(response),
            )
                .into_response()
        }
    }
}

async fn boot_auth(core: &Core, question: Question, body: &[u8]) -> Response {
    let method = match question {
        Question::App => Method::BootAuthApp,
        Question::Kms => Method::BootAuthKms,
    };
    let work = async {
        let boot_info = from_webhook_body(body).map_err(|error| {
            tracing::debug!(%error, "webhook request refused by the schema");
            Status::invalid_argument(INVALID_REQUEST)
        })?;
        let decision = match question {
            Question::App => core.decide_app(&boot_info).await?,
            Question::Kms => core.decide_kms(&boot_info).await?,
        };
        let outcome = super::convert::decision_outcome(&decision);
        Ok(Answer::new(decision, outcome))
    };
    let (status, response) = match core.handle(method, None, work).await {
        Ok(decision) => (
            StatusCode::OK,
            BootAuthResponse {
                is_allowed: decision.allowed,
                reason: decision.reason,
                gateway_app_id: decision.gateway_app_id,
            },
        ),
        Err(error) if error.code() == Code::InvalidArgument => (
            StatusCode::BAD_REQUEST,
            BootAuthResponse {
                is_allowed: false,
                reason: error.message().to_owned(),
                gateway_app_id: String::new(),
            },
        ),
        Err(error) => {
            tracing::debug!(code = ?error.code(), message = error.message(), "webhook failing closed");
            (
                StatusCode::OK,
                BootAuthResponse {
                    is_allowed: false,
                    reason: BACKEND_UNAVAILABLE.to_owned(),
                    gateway_app_id: String::new(),
                },
            )
        }
    };
    (status, Json(response)).into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceInfo<'a> {
    status: &'static str,
    // The dstack KMS's `GetMeta` parser requires strings and a number here: a file source has
    // no contract, node or chain, and says so with "" and 0, never null.
    kms_contract_addr: &'a str,
    eth_rpc_url: &'a str,
    gateway_app_id: String,
    chain_id: u64,
    /// auth-eth's older name for `appImplementation`, kept for its clients.
    app_auth_implementation: String,
    app_implementation: String,
    service: &'static str,
    version: &'static str,
    registry: RegistryInfo<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RegistryInfo<'a> {
    source: &'a str,
    available: bool,
    block: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: String,
    /// The code the KMS runs (chain sources): decisions come from the view only while trusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_code: Option<KmsCodeInfo>,
}

impl<'a> RegistryInfo<'a> {
    fn of(source: &'a str, status: &RegistryStatus) -> Self {
        RegistryInfo {
            source,
            available: status.available,
            block: status.view.block,
            reason: status.reason.clone(),
            kms_code: status.view.kms_code.map(|code| KmsCodeInfo {
                identity: code
                    .identity
                    .map(|identity| to_0x_hex(&identity))
                    .unwrap_or_default(),
                trusted: code.trusted,
            }),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KmsCodeInfo {
    /// Its code identity; empty when the KMS has no code.
    identity: String,
    trusted: bool,
}

/// `GET /`: the webhook's service info (`status` is "ok" only while the view can answer).
async fn service_info(State(state): State<HttpState>) -> Response {
    let status = state.core.status.borrow().clone();
    let app_implementation = status
        .view
        .app_implementation
        .map(|address| to_0x_hex(&address))
        .unwrap_or_default();
    let info = ServiceInfo {
        status: if status.available {
            "ok"
        } else {
            "unavailable"
        },
        kms_contract_addr: state.source.kms_contract.as_deref().unwrap_or_default(),
        eth_rpc_url: state.source.eth_rpc_url.as_deref().unwrap_or_default(),
        gateway_app_id: status.view.gateway_app_id.clone(),
        chain_id: status.view.chain_id.unwrap_or_default(),
        app_auth_implementation: app_implementation.clone(),
        app_implementation,
        service: "tee-verifier",
        version: env!("CARGO_PKG_VERSION"),
        registry: RegistryInfo::of(&state.core.source, &status),
    };
    let code = if status.available {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(info)).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.core.render_metrics(),
    )
        .into_response()
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    registry: RegistryInfo<'a>,
}

/// `GET /healthz`: 200 while the view can answer and the server is not shutting down, else 503.
async fn healthz(State(state): State<HttpState>) -> Response {
    let status = state.core.status.borrow().clone();
    let shutting_down = *state.core.shutdown.borrow();
    let healthy = status.available && !shutting_down;
    let health = Health {
        status: match (healthy, shutting_down) {
            (true, _) => "ok",
            (false, true) => "shutting_down",
            (false, false) => "unavailable",
        },
        registry: RegistryInfo::of(&state.core.source, &status),
    };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health)).into_response()
}
