//! `GET /api/v1/openapi.json`: the OpenAPI 3 document of the API.
//! Placeholder until the document lands.

use hyper::StatusCode;

use super::response::{Reply, json};

/// The document.
pub fn document() -> Reply {
    json(
        StatusCode::OK,
        &serde_json::json!({
            "openapi": "3.0.3",
            "info": { "title": "klosetd", "version": env!("CARGO_PKG_VERSION") },
            "paths": {}
        }),
    )
}
