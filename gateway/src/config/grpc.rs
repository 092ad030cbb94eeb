//! A route's gRPC protocol conversions: gRPC-Web (`grpc_web: true`) and gRPC-JSON transcoding
//! (`grpc_transcode:`), both done by the gateway in front of a gRPC upstream (HTTP/2).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// gRPC-JSON transcoding of a route: REST/JSON calls mapped to the gRPC methods of `services` by the
/// `google.api.http` annotations of a descriptor set, as Envoy's `grpc_json_transcoder` does.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrpcTranscode {
    /// A binary `FileDescriptorSet` (`protoc --include_imports --descriptor_set_out=FILE`, or
    /// `protox`), read when the config is loaded (and on every reload); a relative path is relative
    /// to the config file. It must hold the services and, for their REST mappings, the
    /// `google/api/annotations.proto` and `google/api/http.proto` it imports.
    pub descriptor_set: String,
    /// Fully qualified services transcoded (`bookstore.v1.Bookstore`); each must be in the set.
    pub services: Vec<String>,
    /// A query parameter that names no field of the request message is ignored instead of being
    /// answered 400. Default: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_unknown_query_parameters: bool,
    /// Every method of the services is also reachable as `POST /<package>.<Service>/<Method>` with
    /// the whole request message as the JSON body (methods without an annotation included).
    /// Default: true.
    #[serde(default = "yes")]
    pub method_paths: bool,
    /// How the messages of a server-streaming method are written: `json_array` (one JSON array,
    /// each message an element, written as it comes) or `ndjson` (one message per line,
    /// `application/x-ndjson`). Default: json_array.
    #[serde(default)]
    pub stream_format: StreamFormat,
    /// JSON field names of the answers as in the .proto (`page_size`) instead of lowerCamelCase
    /// (`pageSize`). Requests accept both. Default: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preserve_proto_field_names: bool,
    /// Fields with their default value (0, "", false, empty lists) are written in answers too.
    /// Default: false (proto3 JSON leaves them out).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always_print_primitive_fields: bool,
}

fn yes() -> bool {
    true
}

/// How a server stream's messages are written as JSON.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamFormat {
    /// `[{...},{...}]`, each element sent when its message arrives.
    #[default]
    JsonArray,
    /// `{...}\n{...}\n`, content type `application/x-ndjson`.
    Ndjson,
}

impl GrpcTranscode {
    /// What is wrong with these settings before the descriptor set is read, as
    /// `(field under grpc_transcode, message)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.descriptor_set.is_empty() {
            return Err(("descriptor_set".into(), "names no file".into()));
        }
        if self.services.is_empty() {
            return Err((
                "services".into(),
                "name at least one service (`package.Service`)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let t: GrpcTranscode =
            serde_yaml_ng::from_str("descriptor_set: a.pb\nservices: [a.B]").unwrap();
        assert!(t.method_paths);
        assert_eq!(t.stream_format, StreamFormat::JsonArray);
        assert!(t.check().is_ok());
        let t: GrpcTranscode =
            serde_yaml_ng::from_str("descriptor_set: a.pb\nservices: []\nstream_format: ndjson")
                .unwrap();
        assert_eq!(t.stream_format, StreamFormat::Ndjson);
        assert_eq!(t.check().unwrap_err().0, "services");
        assert!(
            serde_yaml_ng::from_str::<GrpcTranscode>("descriptor_set: a\nservices: []\nx: 1")
                .is_err()
        );
    }
}
