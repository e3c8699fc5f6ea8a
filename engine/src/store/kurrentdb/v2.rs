//! Protocol v2's `AppendSession` (KurrentDB 25.1 and later): several streams in one commit, which
//! the `kurrentdb` crate does not expose. The messages are written out by hand from KurrentDB's
//! published `kurrentdb/protocol/v2/streams/streams.proto` and `errors.proto` (the fields used here
//! only), so that building needs no `protoc`.

use prost_types::value::Kind;
use std::collections::HashMap;
use tonic::codegen::http::uri::PathAndQuery;

const APPEND_SESSION: &str = "/kurrentdb.protocol.v2.streams.StreamsService/AppendSession";
/// `SCHEMA_FORMAT_JSON`.
const SCHEMA_FORMAT_JSON: i32 = 1;

/// One stream's part of a session.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendRequest {
    #[prost(string, tag = "1")]
    pub stream: String,
    #[prost(message, repeated, tag = "2")]
    pub records: Vec<AppendRecord>,
    /// A revision, or -1 for "no stream" (-2 "any" and -4 "exists" are not used here).
    #[prost(sint64, optional, tag = "3")]
    pub expected_revision: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendRecord {
    #[prost(string, optional, tag = "1")]
    pub record_id: Option<String>,
    /// Stored by the server as the event's metadata (a JSON object), as the v1 API reads it.
    #[prost(map = "string, message", tag = "2")]
    pub properties: HashMap<String, prost_types::Value>,
    #[prost(message, optional, tag = "3")]
    pub schema: Option<SchemaInfo>,
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SchemaInfo {
    /// `SchemaFormat`, an enum on the wire (a varint like `int32`).
    #[prost(int32, tag = "1")]
    pub format: i32,
    /// The event type.
    #[prost(string, tag = "2")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendResponse {
    #[prost(string, tag = "1")]
    pub stream: String,
    #[prost(sint64, tag = "2")]
    pub stream_revision: i64,
    #[prost(sint64, optional, tag = "3")]
    pub position: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendSessionResponse {
    #[prost(message, repeated, tag = "1")]
    pub output: Vec<AppendResponse>,
    #[prost(sint64, tag = "2")]
    pub position: i64,
}

/// `google.rpc.Status`, as the server puts it in the `grpc-status-details-bin` trailer.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StreamRevisionConflictErrorDetails {
    #[prost(string, tag = "1")]
    stream: String,
    #[prost(sint64, tag = "2")]
    expected_revision: i64,
    #[prost(sint64, tag = "3")]
    actual_revision: i64,
}

/// A record of JSON `data` with the envelope's string fields as its properties.
pub fn record(
    id: uuid::Uuid,
    event_type: &str,
    data: &str,
    envelope: &serde_json::Value,
) -> AppendRecord {
    let properties = envelope
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            let text = value.as_str()?;
            let value = prost_types::Value {
                kind: Some(Kind::StringValue(text.to_owned())),
            };
            Some((key.clone(), value))
        })
        .collect();
    AppendRecord {
        record_id: Some(id.to_string()),
        properties,
        schema: Some(SchemaInfo {
            format: SCHEMA_FORMAT_JSON,
            name: event_type.to_owned(),
        }),
        data: data.as_bytes().to_vec(),
    }
}

/// Why a session was refused, as far as the engine cares.
#[derive(Debug)]
pub enum Refusal {
    /// A stream was not at the revision expected: someone else appended in between.
    Conflict { stream: String },
    /// The server has no protocol v2 (older than 25.1).
    Unsupported,
    /// Anything else: a transport failure or a server error.
    Other(tonic::Status),
}

pub fn refusal(status: tonic::Status) -> Refusal {
    if status.code() == tonic::Code::Unimplemented {
        return Refusal::Unsupported;
    }
    match conflict_stream(status.details()) {
        Some(stream) => Refusal::Conflict { stream },
        None => Refusal::Other(status),
    }
}

/// The stream named in a `StreamRevisionConflictErrorDetails`, if `details` carry one.
fn conflict_stream(details: &[u8]) -> Option<String> {
    use prost::Message;
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .find(|any| any.type_url.ends_with("StreamRevisionConflictErrorDetails"))
        .and_then(|any| StreamRevisionConflictErrorDetails::decode(any.value.as_slice()).ok())
        .map(|d| d.stream)
}

/// Sends one session: every part is stored or none is.
pub async fn append_session(
    channel: tonic::transport::Channel,
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    parts: Vec<AppendRequest>,
) -> Result<AppendSessionResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connecting to KurrentDB: {e}")))?;
    let mut request = tonic::Request::new(futures::stream::iter(parts));
    if let Some(authorization) = authorization {
        request
            .metadata_mut()
            .insert("authorization", authorization);
    }
    let codec = tonic::codec::ProstCodec::default();
    let response = grpc
        .client_streaming(request, PathAndQuery::from_static(APPEND_SESSION), codec)
        .await?;
    Ok(response.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_record_carries_id_type_json_and_the_envelope_as_string_properties() {
        let id = uuid::Uuid::now_v7();
        let envelope = serde_json::json!({"sportello": "1", "schema": "2", "ignored": 3});
        let r = record(id, "CaseOpened", r#"{"a":1}"#, &envelope);
        assert_eq!(r.record_id.as_deref(), Some(id.to_string().as_str()));
        assert_eq!(r.schema.as_ref().unwrap().name, "CaseOpened");
        assert_eq!(r.schema.as_ref().unwrap().format, SCHEMA_FORMAT_JSON);
        assert_eq!(r.data, br#"{"a":1}"#);
        assert_eq!(r.properties.len(), 2, "only strings are sent");
        assert_eq!(
            r.properties["schema"].kind,
            Some(Kind::StringValue("2".into()))
        );
    }

    #[test]
    fn the_wire_format_is_the_protos_field_for_field() {
        // Field 3 of AppendRequest is a zig-zag `sint64`: -1 ("no stream") is the single byte 1.
        let part = AppendRequest {
            stream: "case-1".into(),
            records: vec![],
            expected_revision: Some(-1),
        };
        assert_eq!(
            part.encode_to_vec(),
            [0x0a, 6, b'c', b'a', b's', b'e', b'-', b'1', 0x18, 1]
        );
        let response = AppendSessionResponse {
            output: vec![AppendResponse {
                stream: "s-1".into(),
                stream_revision: 4,
                position: Some(300),
            }],
            position: 300,
        };
        let back = AppendSessionResponse::decode(response.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, response);
    }

    #[test]
    fn a_revision_conflict_names_its_stream_and_other_failures_stay_as_they_are() {
        let details = StreamRevisionConflictErrorDetails {
            stream: "register-073019.2026".into(),
            expected_revision: 4,
            actual_revision: 5,
        };
        let status = RpcStatus {
            code: tonic::Code::FailedPrecondition as i32,
            message: "conflict".into(),
            details: vec![prost_types::Any {
                type_url:
                    "type.googleapis.com/kurrentdb.protocol.v2.streams.errors.StreamRevisionConflictErrorDetails"
                        .into(),
                value: details.encode_to_vec(),
            }],
        };
        let conflict = tonic::Status::with_details(
            tonic::Code::FailedPrecondition,
            "conflict",
            status.encode_to_vec().into(),
        );
        assert!(
            matches!(refusal(conflict), Refusal::Conflict { stream } if stream == "register-073019.2026")
        );
        assert!(matches!(
            refusal(tonic::Status::unimplemented("no such method")),
            Refusal::Unsupported
        ));
        let other = refusal(tonic::Status::failed_precondition("stream deleted"));
        assert!(matches!(other, Refusal::Other(s) if s.message() == "stream deleted"));
    }
}
