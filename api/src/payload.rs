//! A JSON response body serialized straight from the value with serde.
//!
//! poem-openapi's `Json` first converts the value into a `serde_json::Value` tree and then prints the
//! tree; for a history series (20-odd arrays of up to 2,000 numbers) building that tree cost more than
//! the store query. `SerdeJson` documents the same schema (the type's poem-openapi `Type`) and
//! prints the value directly. The type's serde attributes must give the same field names as its
//! `Object` derive; the history tests read the responses, which checks it.

use poem::http::{StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::ApiResponse;
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde::Serialize;

pub struct SerdeJson<T>(pub T);

/// A guess of a value's JSON length, so the body is written into one allocation instead of being
/// copied at every doubling (a year-long series is ~250 KB).
pub trait JsonSizeHint {
    fn json_size_hint(&self) -> usize;
}

impl<T: Type + Serialize + JsonSizeHint> Payload for SerdeJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + Serialize + JsonSizeHint> IntoResponse for SerdeJson<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(self.0.json_size_hint());
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => Response::builder().content_type(Self::CONTENT_TYPE).body(body),
            Err(e) => {
                // Only a failing `Serialize` impl could get here; the derived ones do not fail.
                tracing::error!(error = %e, "cannot serialize a response");
                Response::builder()
                    .status(StatusCode::INTERNAL_SERVER_ERROR)
                    .header(header::CONTENT_TYPE, Self::CONTENT_TYPE)
                    .body(r#"{"detail":"internal error"}"#)
            }
        }
    }
}

impl<T: Type + Serialize + JsonSizeHint> ApiResponse for SerdeJson<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: Self::CONTENT_TYPE,
                    schema: Self::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}
