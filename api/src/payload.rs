//! JSON bodies through serde: responses serialized straight from the value and held as bytes, and
//! requests whose errors name the field.
//!
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
use poem::{FromRequest, IntoResponse, Response};
use poem_openapi::error::{ContentTypeError, ParseRequestPayloadError};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{
    MetaMediaType, MetaRequest, MetaResponse, MetaResponses, MetaSchemaRef, Registry,
};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions};
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

/// A JSON request body read with serde, so that a value that does not fit names its field
/// (`port: invalid type: string "5432", expected i64`), as FastAPI's 422 did; poem-openapi's own
/// `Json` names only the type. The OpenAPI schema is the type's poem-openapi `Type`: its serde
/// attributes must give the same field names (and `deny_unknown_fields`, which the served document
/// states as `additionalProperties: false`).
pub struct JsonBody<T>(pub T);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + serde::de::DeserializeOwned + Send> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &poem::Request, body: &mut poem::RequestBody) -> poem::Result<Self> {
        let data = <Vec<u8> as FromRequest>::from_request(request, body).await?;
        if data.is_empty() {
            return Err(ParseRequestPayloadError {
                reason: "a JSON body is required".into(),
            }
            .into());
        }
        // serde would also read a struct from a JSON array of its fields in order.
        if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ParseRequestPayloadError {
                reason: "the body must be a JSON object".into(),
            }
            .into());
        }
        let mut de = serde_json::Deserializer::from_slice(&data);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ParseRequestPayloadError {
                reason: if path == "." {
                    inner.to_string()
                } else {
                    format!("{path}: {inner}")
                },
            }
        })?;
        de.end().map_err(|e| ParseRequestPayloadError {
            reason: e.to_string(),
        })?;
        Ok(Self(value))
    }
}

impl<'a, T: Type + serde::de::DeserializeOwned + Send> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: <Self as Payload>::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a poem::Request,
        body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(ct) if <Self as Payload>::check_content_type(ct) => {
                <Self as ParsePayload>::from_request(request, body).await
            }
            Some(ct) => Err(ContentTypeError::NotSupported {
                content_type: ct.to_string(),
            }
            .into()),
            None => Err(ContentTypeError::ExpectContentType.into()),
        }
    }
}
