//! The control endpoint `simulate` starts: a plain HTTP listener on the loopback interface
//! that reads and switches every part's standing [faults](super::faults), so tools pointed at
//! the simulator can be tested against failure too.
//!
//! - `GET /faults`: `{"<part>": <settings>, ...}` for every part;
//! - `PUT /faults`: the body's settings for every part, answered like `GET /faults`;
//! - `GET /faults/{part}`, `PUT /faults/{part}`: one part's settings.
//!
//! Parts are named as `simulate` lists them ([`Simulator::parts`]: `vc1`, `snap1`, `vcd1`,
//! `srs1`). The body is [`FaultSettings`] as JSON; a `PUT` replaces the settings, so a field
//! left out is off. A body that is not such JSON, or a value out of range, answers `400
//! {"error": "..."}` and changes nothing; an unknown part or path answers `404` the same way.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::Simulator;
use super::faults::{FaultSettings, StandingFaults};
use super::listener::{Gate, Listener};
use super::web::json as json_resp;

/// Every part's name and its standing faults.
type Parts = Arc<Vec<(&'static str, StandingFaults)>>;

/// The running control endpoint; it stops on `shutdown()` or when dropped. It does not keep
/// the parts running.
pub struct Control {
    listener: Listener,
}

impl Control {
    /// Serves the control endpoint of `sim` on `127.0.0.1:port` (0: any free port).
    pub async fn start(sim: &Simulator, port: u16) -> std::io::Result<Control> {
        let parts: Parts = Arc::new(
            sim.parts()
                .into_iter()
                .map(|(name, part)| (name, part.standing()))
                .collect(),
        );
        let listener = Listener::start_on(port, router(parts), false, Gate::open()).await?;
        tracing::info!(url = %listener.url(), "simulator control endpoint listening");
        Ok(Control { listener })
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        self.listener.url()
    }

    pub fn shutdown(&self) {
        self.listener.shutdown();
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("url", &self.url()).finish()
    }
}

fn router(parts: Parts) -> Router {
    Router::new()
        .route("/faults", get(get_all).put(put_all))
        .route("/faults/{part}", get(get_one).put(put_one))
        .fallback(unknown_path)
        .with_state(parts)
}

async fn get_all(State(parts): State<Parts>) -> Response {
    all(&parts)
}

async fn put_all(State(parts): State<Parts>, body: Bytes) -> Response {
    let settings = match FaultSettings::from_json(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    for (_, faults) in parts.iter() {
        if let Err(e) = faults.set(settings.clone()) {
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    }
    all(&parts)
}

async fn get_one(State(parts): State<Parts>, Path(name): Path<String>) -> Response {
    match find(&parts, &name) {
        Ok(faults) => settings(&faults.get()),
        Err(resp) => *resp,
    }
}

async fn put_one(State(parts): State<Parts>, Path(name): Path<String>, body: Bytes) -> Response {
    let faults = match find(&parts, &name) {
        Ok(faults) => faults,
        Err(resp) => return *resp,
    };
    match FaultSettings::from_json(&body).and_then(|s| faults.set(s)) {
        Ok(()) => settings(&faults.get()),
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn unknown_path() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such path: the control endpoint serves GET and PUT on /faults and /faults/{part}",
    )
}

/// The part named `name`, or the `404` naming the parts there are.
fn find<'a>(parts: &'a Parts, name: &str) -> Result<&'a StandingFaults, Box<Response>> {
    parts
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, faults)| faults)
        .ok_or_else(|| {
            let names: Vec<&str> = parts.iter().map(|(n, _)| *n).collect();
            Box::new(error(
                StatusCode::NOT_FOUND,
                &format!("no part named '{name}'; parts: {}", names.join(", ")),
            ))
        })
}

fn all(parts: &Parts) -> Response {
    let map: Map<String, Value> = parts
        .iter()
        .map(|(name, faults)| (name.to_string(), to_value(&faults.get())))
        .collect();
    json_resp(StatusCode::OK, &Value::Object(map))
}

fn settings(s: &FaultSettings) -> Response {
    json_resp(StatusCode::OK, &to_value(s))
}

fn to_value(s: &FaultSettings) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

fn error(status: StatusCode, message: &str) -> Response {
    json_resp(status, &json!({ "error": message }))
}
