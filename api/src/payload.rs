//! A JSON response body serialized straight from the value with serde, held as bytes.
//!
//! poem-openapi's `Json` first converts the value into a `serde_json::Value` tree and then prints the
//! tree; for a history series (20-odd arrays of up to 2,000 numbers) building that tree cost more than
//! the store query. `SerdeJson` documents the same schema (the type's poem-openapi `Type`) and
//! prints the value directly, once: the bytes can be kept and sent again (see
//! [`crate::history_cache`]). The type's serde attributes must give the same field names as its
//! `Object` derive; the history tests read the responses, which checks it.

use crate::error::ApiError;
use bytes::Bytes;
use poem::{IntoResponse, Response};
use poem_openapi::ApiResponse;
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde::Serialize;
use std::marker::PhantomData;

pub struct SerdeJson<T> {
    body: Bytes,
    schema: PhantomData<fn() -> T>,
}

/// A guess of a value's JSON length, so the body is written into one allocation instead of being
/// copied at every doubling (a year-long series is ~250 KB).
pub trait JsonSizeHint {
    fn json_size_hint(&self) -> usize;
}

impl<T: Serialize + JsonSizeHint> SerdeJson<T> {
    pub fn new(value: &T) -> Result<Self, ApiError> {
        let mut body = Vec::with_capacity(value.json_size_hint());
        // Only a failing `Serialize` impl could fail here; the derived ones do not.
        serde_json::to_writer(&mut body, value).map_err(ApiError::internal)?;
        Ok(Self::from_bytes(body.into()))
    }
}

impl<T> SerdeJson<T> {
    /// A body serialized earlier from a `T`.
    pub fn from_bytes(body: Bytes) -> Self {
        Self {
            body,
            schema: PhantomData,
        }
    }

    pub fn bytes(&self) -> &Bytes {
        &self.body
    }
}

impl<T: Type> Payload for SerdeJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type> IntoResponse for SerdeJson<T> {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(Self::CONTENT_TYPE)
            .body(self.body)
    }
}

impl<T: Type> ApiResponse for SerdeJson<T> {
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
