//! The `/metrics` endpoint. Each scrape is a request to the serve loop,
//! which owns the kernel maps and answers with the rendered text: the maps
//! are read when the scrape arrives, by the one task that holds them.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// A scrape waiting for its text (or the reason there is none).
pub type Scrape = oneshot::Sender<Result<String, String>>;

/// Serves `/metrics` on `listener` until the process ends; every scrape is
/// sent on `scrapes`.
pub fn spawn(listener: TcpListener, scrapes: mpsc::Sender<Scrape>) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .with_state(scrapes);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("tracker: the metrics endpoint stopped: {e}");
        }
    })
}

async fn index() -> &'static str {
    "tracker serve: metrics at /metrics\n"
}

async fn metrics(State(scrapes): State<mpsc::Sender<Scrape>>) -> Response {
    let (tx, rx) = oneshot::channel();
    if scrapes.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "tracker is stopping\n").into_response();
    }
    match rx.await {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, super::CONTENT_TYPE)], text).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "tracker is stopping\n").into_response(),
    }
}
