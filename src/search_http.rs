//! Search over HTTP, for tools and UIs: `POST /v1/search` runs one
//! [`SearchRequest`] against the process's `[rag.<name>]` indexes, `GET /v1/indexes`
//! shows what each holds. Every error is JSON `{"error": "..."}`: 400 for a request
//! at fault (bad JSON, bad filter, wrong vector size), 404 for an unknown index, 500
//! when the encoder fails.

use std::sync::Arc;

use agentlog_agents::rag::{Indexes, SearchRequest, SearchRequestError};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;

/// The search routes, over `indexes` (filled as the agents start).
pub fn routes(indexes: Arc<Indexes>) -> Router {
    Router::new()
        .route("/v1/search", post(search))
        .route("/v1/indexes", get(list))
        .with_state(indexes)
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: String) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

async fn search(State(indexes): State<Arc<Indexes>>, body: Bytes) -> Response {
    let request: SearchRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    match indexes.search(&request).await {
        Ok(response) => match serde_json::to_value(&response) {
            Ok(body) => json(StatusCode::OK, &body),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        Err(e @ SearchRequestError::UnknownIndex(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) if e.is_client_error() => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list(State(indexes): State<Arc<Indexes>>) -> Response {
    match serde_json::to_value(indexes.stats()) {
        Ok(body) => json(StatusCode::OK, &body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
