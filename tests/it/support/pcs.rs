//! A PCS/PCCS-compatible HTTP server on 127.0.0.1 for the collateral tests (governance.md §1).
//!
//! It serves collateral given in `QuoteCollateralV3` shape with the real v4 URL shapes, bodies
//! and headers of Intel's PCS or of a PCCS:
//! - `GET /tdx/certification/v4/tcb?fmspc=&update=`: `{"tcbInfo":…,"signature":…}`, the signed
//!   text spliced in byte for byte, and the URL-encoded PEM chain in `TCB-Info-Issuer-Chain`;
//! - `GET /tdx/certification/v4/qe/identity?update=`: `{"enclaveIdentity":…,"signature":…}`,
//!   `SGX-Enclave-Identity-Issuer-Chain`;
//! - `GET /sgx/certification/v4/pckcrl?ca=&encoding=der`: DER (without `encoding=der` a PCCS
//!   sends hex; the PCS's PEM is not served), `SGX-PCK-CRL-Issuer-Chain`;
//! - PCCS only: `GET /sgx/certification/v4/rootcacrl`, the hex of the DER;
//! - PCS: the root CA CRL at `/IntelSGXRootCA.der` (DER), standing in for Intel's CRL host;
//! - any other path: a static file or a redirect put there by the test.
//!
//! Every request is recorded, and faults can be injected per route.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt as _;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    Pcs,
    Pccs,
}

/// What a route answers, besides the collateral.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Route {
    TcbInfo,
    QeIdentity,
    PckCrl,
    RootCaCrl,
    /// Static files and redirects.
    Other,
}

#[derive(Clone, Debug)]
pub(crate) enum Fault {
    NotFound,
    ServerError,
    /// Answer only after this long.
    Delay(Duration),
    /// Declare the whole body, send half of it, then drop the connection.
    Truncate,
    /// Flip one digit of the document's signature.
    BadSignature,
    /// Send this PEM chain in the issuer chain header instead.
    Chain(String),
    /// Send no issuer chain header.
    NoChain,
    /// Send this body instead.
    Body(Vec<u8>),
}

/// One request as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) path: String,
    pub(crate) query: String,
}

#[derive(Clone)]
struct Signed {
    text: String,
    signature: String,
    chain: String,
}

#[derive(Default)]
struct Data {
    tcb_infos: HashMap<String, Signed>,
    qe_identity: Option<Signed>,
    pck_crls: HashMap<String, (Vec<u8>, String)>,
    root_ca_crl: Option<Vec<u8>>,
    files: HashMap<String, Vec<u8>>,
    redirects: HashMap<String, String>,
    /// A fault and how many more requests it applies to (`None`: all).
    faults: HashMap<Route, (Fault, Option<usize>)>,
    log: Vec<Request>,
}

struct Shared {
    flavor: Flavor,
    data: Mutex<Data>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// Counts a request out when its handler ends or is dropped.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> InFlight<'a> {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) struct PcsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl PcsServer {
    pub(crate) async fn start(flavor: Flavor) -> PcsServer {
        let shared = Arc::new(Shared {
            flavor,
            data: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        PcsServer { addr, shared, task }
    }

    /// The base URL to configure (`http://127.0.0.1:PORT`).
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The PCS's root CA CRL URL here (a PCCS serves it under the base URL).
    pub(crate) fn root_ca_crl_url(&self) -> String {
        self.url("/IntelSGXRootCA.der")
    }

    /// Stops accepting connections. Requests on connections already open may still be answered.
    pub(crate) fn stop(&self) {
        self.task.abort();
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.shared.data.lock().unwrap()
    }

    /// Serves the four items of a `QuoteCollateralV3` document (its TCB Info under its FMSPC,
    /// its PCK CRL under the CA named by its issuer chain), replacing what was served before.
    pub(crate) fn serve_collateral(&self, collateral: &Value) {
        let text = |field: &str| collateral[field].as_str().unwrap().to_owned();
        let tcb_info: Value = serde_json::from_str(&text("tcb_info")).unwrap();
        let fmspc = tcb_info["fmspc"].as_str().unwrap().to_ascii_uppercase();
        let pck_chain = text("pck_crl_issuer_chain");
        let ca = pck_ca_of(&pck_chain);
        let mut data = self.data();
        data.tcb_infos.insert(
            fmspc,
            Signed {
                text: text("tcb_info"),
                signature: text("tcb_info_signature"),
                chain: text("tcb_info_issuer_chain"),
            },
        );
        data.qe_identity = Some(Signed {
            text: text("qe_identity"),
            signature: text("qe_identity_signature"),
            chain: text("qe_identity_issuer_chain"),
        });
        data.pck_crls.insert(
            ca.to_owned(),
            (hex::decode(text("pck_crl")).unwrap(), pck_chain),
        );
        data.root_ca_crl = Some(hex::decode(text("root_ca_crl")).unwrap());
    }

    /// Replaces the served TCB Info of `fmspc` (upper-case hex) with another signed text.
    pub(crate) fn serve_tcb_info(&self, fmspc: &str, text: &str, signature: &str) {
        let mut data = self.data();
        let signed = data.tcb_infos.get_mut(fmspc).expect("a TCB Info is served");
        signed.text = text.to_owned();
        signed.signature = signature.to_owned();
    }

    /// Replaces the served QE Identity with another signed text.
    pub(crate) fn serve_qe_identity(&self, text: &str, signature: &str) {
        let mut data = self.data();
        let signed = data.qe_identity.as_mut().expect("a QE Identity is served");
        signed.text = text.to_owned();
        signed.signature = signature.to_owned();
    }

    pub(crate) fn serve_file(&self, path: &str, body: Vec<u8>) {
        self.data().files.insert(path.to_owned(), body);
    }

    pub(crate) fn redirect(&self, path: &str, location: &str) {
        self.data()
            .redirects
            .insert(path.to_owned(), location.to_owned());
    }

    /// Applies `fault` to every request of `route` until cleared.
    pub(crate) fn fault(&self, route: Route, fault: Fault) {
        self.data().faults.insert(route, (fault, None));
    }

    /// Applies `fault` to every request of the four collateral routes until cleared.
    pub(crate) fn fault_all(&self, fault: Fault) {
        for route in [
            Route::TcbInfo,
            Route::QeIdentity,
            Route::PckCrl,
            Route::RootCaCrl,
        ] {
            self.fault(route, fault.clone());
        }
    }

    /// Applies `fault` to the next `times` requests of `route`.
    pub(crate) fn fault_times(&self, route: Route, fault: Fault, times: usize) {
        self.data().faults.insert(route, (fault, Some(times)));
    }

    pub(crate) fn clear_faults(&self) {
        self.data().faults.clear();
    }

    /// Every request so far, in order.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.data().log.clone()
    }

    /// The most requests that were being answered at one time.
    pub(crate) fn most_in_flight(&self) -> usize {
        self.shared.most_in_flight.load(Ordering::SeqCst)
    }

    /// Requests so far whose path is `path`.
    pub(crate) fn count(&self, path: &str) -> usize {
        self.data().log.iter().filter(|r| r.path == path).count()
    }
}

impl Drop for PcsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) const TCB_PATH: &str = "/tdx/certification/v4/tcb";
pub(crate) const QE_IDENTITY_PATH: &str = "/tdx/certification/v4/qe/identity";
pub(crate) const PCK_CRL_PATH: &str = "/sgx/certification/v4/pckcrl";
pub(crate) const PCCS_ROOT_CA_CRL_PATH: &str = "/sgx/certification/v4/rootcacrl";
pub(crate) const PCS_ROOT_CA_CRL_PATH: &str = "/IntelSGXRootCA.der";

/// `processor` or `platform`, from the subject of the first certificate of a PEM chain.
pub(crate) fn pck_ca_of(chain_pem: &str) -> &'static str {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let subject = cert.subject().to_string();
    if subject.contains("Processor") {
        "processor"
    } else if subject.contains("Platform") {
        "platform"
    } else {
        panic!("{subject} is no PCK CA")
    }
}

fn query_pairs(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| percent_decode_str(text).decode_utf8_lossy().into_owned();
            (decode(name), decode(value))
        })
        .collect()
}

fn status(code: StatusCode) -> Response {
    (code, "").into_response()
}

/// What a route serves when no fault interferes: status, headers, body.
struct Answer {
    content_type: &'static str,
    chain: Option<(&'static str, String)>,
    body: Vec<u8>,
}

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let params = query_pairs(&query);
    let route = match path.as_str() {
        TCB_PATH => Route::TcbInfo,
        QE_IDENTITY_PATH => Route::QeIdentity,
        PCK_CRL_PATH => Route::PckCrl,
        PCCS_ROOT_CA_CRL_PATH if shared.flavor == Flavor::Pccs => Route::RootCaCrl,
        PCS_ROOT_CA_CRL_PATH if shared.flavor == Flavor::Pcs => Route::RootCaCrl,
        _ => Route::Other,
    };
    let (fault, answer) = {
        let mut data = shared.data.lock().unwrap();
        data.log.push(Request {
            path: path.clone(),
            query: query.clone(),
        });
        let fault = match data.faults.get_mut(&route) {
            Some((fault, None)) => Some(fault.clone()),
            Some((fault, Some(left))) if *left > 0 => {
                *left -= 1;
                Some(fault.clone())
            }
            _ => None,
        };
        if route == Route::Other {
            if let Some(location) = data.redirects.get(&path) {
                let mut response = status(StatusCode::FOUND);
                response
                    .headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_str(location).unwrap());
                return response;
            }
        }
        (fault, answer(shared.flavor, &data, route, &path, &params))
    };
    let mut answer = match answer {
        Ok(answer) => answer,
        Err(code) => return status(code),
    };
    let truncate = matches!(fault, Some(Fault::Truncate));
    match fault {
        Some(Fault::NotFound) => return status(StatusCode::NOT_FOUND),
        Some(Fault::ServerError) => return status(StatusCode::INTERNAL_SERVER_ERROR),
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::BadSignature) => {
            let body = String::from_utf8(answer.body).unwrap();
            // The signature is the last string of the body: flip its first digit.
            let at = body.rfind("\"signature\":\"").unwrap() + "\"signature\":\"".len();
            let mut bytes = body.into_bytes();
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            answer.body = bytes;
        }
        Some(Fault::Chain(pem)) => {
            if let Some((name, _)) = answer.chain {
                answer.chain = Some((name, pem));
            }
        }
        Some(Fault::NoChain) => answer.chain = None,
        Some(Fault::Body(body)) => answer.body = body,
        Some(Fault::Truncate) | None => {}
    }
    let mut response = if truncate {
        let full = answer.body.len();
        let half = answer.body[..full / 2].to_vec();
        // The half is flushed before the error, so the client reads a short body.
        let stream = futures::stream::iter([Some(half), None]).then(|chunk| async move {
            match chunk {
                Some(bytes) => Ok(axum::body::Bytes::from(bytes)),
                None => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(std::io::Error::other("truncated on purpose"))
                }
            }
        });
        let mut response = Response::new(Body::from_stream(stream));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(full));
        response
    } else {
        Response::new(Body::from(answer.body))
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(answer.content_type),
    );
    if let Some((name, pem)) = answer.chain {
        // Intel URL-encodes the PEM chain (every byte but letters and digits).
        let encoded = utf8_percent_encode(&pem, NON_ALPHANUMERIC).to_string();
        headers.insert(name, HeaderValue::from_str(&encoded).unwrap());
    }
    response
}

fn answer(
    flavor: Flavor,
    data: &Data,
    route: Route,
    path: &str,
    params: &HashMap<String, String>,
) -> Result<Answer, StatusCode> {
    let update_ok = params
        .get("update")
        .is_none_or(|u| matches!(u.to_ascii_lowercase().as_str(), "standard" | "early"));
    match route {
        Route::TcbInfo => {
            let fmspc = params.get("fmspc").ok_or(StatusCode::BAD_REQUEST)?;
            if fmspc.len() != 12 || hex::decode(fmspc).is_err() || !update_ok {
                return Err(StatusCode::BAD_REQUEST);
            }
            let signed = data
                .tcb_infos
                .get(&fmspc.to_ascii_uppercase())
                .ok_or(StatusCode::NOT_FOUND)?;
            Ok(signed_answer("tcbInfo", "TCB-Info-Issuer-Chain", signed))
        }
        Route::QeIdentity => {
            if !update_ok {
                return Err(StatusCode::BAD_REQUEST);
            }
            let signed = data.qe_identity.as_ref().ok_or(StatusCode::NOT_FOUND)?;
            Ok(signed_answer(
                "enclaveIdentity",
                "SGX-Enclave-Identity-Issuer-Chain",
                signed,
            ))
        }
        Route::PckCrl => {
            let ca = params
                .get("ca")
                .map(|ca| ca.to_ascii_lowercase())
                .ok_or(StatusCode::BAD_REQUEST)?;
            let (der, chain) = data.pck_crls.get(&ca).ok_or(StatusCode::NOT_FOUND)?;
            let body = match (params.get("encoding").map(String::as_str), flavor) {
                (Some("der"), _) => der.clone(),
                (_, Flavor::Pccs) => hex::encode(der).into_bytes(),
                // The PCS's default is PEM, which nothing here asks for.
                (_, Flavor::Pcs) => return Err(StatusCode::NOT_IMPLEMENTED),
            };
            Ok(Answer {
                content_type: "application/pkix-crl",
                chain: Some(("SGX-PCK-CRL-Issuer-Chain", chain.clone())),
                body,
            })
        }
        Route::RootCaCrl => {
            let der = data.root_ca_crl.as_ref().ok_or(StatusCode::NOT_FOUND)?;
            let body = match flavor {
                // "To keep backward compatibility": hex, despite the content type.
                Flavor::Pccs => hex::encode(der).into_bytes(),
                Flavor::Pcs => der.clone(),
            };
            Ok(Answer {
                content_type: "application/pkix-crl",
                chain: None,
                body,
            })
        }
        Route::Other => {
            let body = data.files.get(path).ok_or(StatusCode::NOT_FOUND)?;
            Ok(Answer {
                content_type: "application/octet-stream",
                chain: None,
                body: body.clone(),
            })
        }
    }
}

fn signed_answer(field: &str, header_name: &'static str, signed: &Signed) -> Answer {
    // Spliced as text: the signature covers these exact bytes.
    let body = format!(
        "{{\"{field}\":{},\"signature\":\"{}\"}}",
        signed.text, signed.signature
    );
    Answer {
        content_type: "application/json",
        chain: Some((header_name, signed.chain.clone())),
        body: body.into_bytes(),
    }
}
