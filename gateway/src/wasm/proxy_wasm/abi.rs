//! Numbers and wire formats of the Proxy-Wasm ABI (0.2.1 and 0.2.0).

/// `WasmResult` status codes returned by host functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// Not found (unknown key, context, queue, foreign function, ...).
    NotFound = 1,
    /// Bad argument (wrong phase, invalid header, unknown enum value, ...).
    BadArgument = 2,
    /// A map or path could not be deserialized.
    SerializationFailure = 3,
    /// Parse failure.
    ParseFailure = 4,
    /// A pointer or length outside the guest's memory.
    InvalidMemoryAccess = 6,
    /// Nothing to return (empty queue).
    Empty = 7,
    /// Compare-and-swap token mismatch.
    CasMismatch = 8,
    /// The host failed.
    InternalFailure = 10,
    /// A callout's connection failed.
    BrokenConnection = 11,
    /// Not implemented by this host.
    Unimplemented = 12,
}

impl Status {
    /// As the guest sees it.
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// `proxy_get_buffer_bytes` buffer types.
pub mod buffer {
    /// Request body of the current HTTP context.
    pub const HTTP_REQUEST_BODY: u32 = 0;
    /// Response body of the current HTTP context.
    pub const HTTP_RESPONSE_BODY: u32 = 1;
    /// TCP downstream data (not offered: HTTP only).
    pub const DOWNSTREAM_DATA: u32 = 2;
    /// TCP upstream data (not offered: HTTP only).
    pub const UPSTREAM_DATA: u32 = 3;
    /// Body of the callout response being delivered.
    pub const HTTP_CALL_RESPONSE_BODY: u32 = 4;
    /// gRPC message being delivered (never: gRPC callouts are not offered).
    pub const GRPC_RECEIVE_BUFFER: u32 = 5;
    /// The plugin's VM configuration.
    pub const VM_CONFIGURATION: u32 = 6;
    /// The route's plugin configuration.
    pub const PLUGIN_CONFIGURATION: u32 = 7;
    /// Foreign function arguments.
    pub const CALL_DATA: u32 = 8;
}

/// Header map types.
pub mod map {
    /// Request headers.
    pub const REQUEST_HEADERS: u32 = 0;
    /// Request trailers.
    pub const REQUEST_TRAILERS: u32 = 1;
    /// Response headers.
    pub const RESPONSE_HEADERS: u32 = 2;
    /// Response trailers.
    pub const RESPONSE_TRAILERS: u32 = 3;
    /// gRPC initial metadata.
    pub const GRPC_INITIAL_METADATA: u32 = 4;
    /// gRPC trailing metadata.
    pub const GRPC_TRAILING_METADATA: u32 = 5;
    /// Callout response headers.
    pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
    /// Callout response trailers.
    pub const HTTP_CALL_RESPONSE_TRAILERS: u32 = 7;
}

/// Stream types of `proxy_continue_stream` / `proxy_close_stream`.
pub mod stream {
    /// The HTTP request.
    pub const HTTP_REQUEST: u32 = 0;
    /// The HTTP response.
    pub const HTTP_RESPONSE: u32 = 1;
    /// TCP downstream.
    pub const DOWNSTREAM: u32 = 2;
    /// TCP upstream.
    pub const UPSTREAM: u32 = 3;
}

/// Callback return values.
pub mod action {
    /// Continue.
    pub const CONTINUE: u32 = 0;
    /// Pause (stop iteration; in body phases, buffer).
    pub const PAUSE: u32 = 1;
}

/// Header pairs as bytes.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Serializes pairs in the Proxy-Wasm map format: count, then (key length, value length) pairs, then
/// each key and value followed by a NUL. An empty map is the 4-byte count 0.
pub fn serialize_map<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut size = 4;
    for (k, v) in pairs {
        size += 8 + k.as_ref().len() + v.as_ref().len() + 2;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// Parses the map format; `None` if it is malformed. Empty input is an empty map.
pub fn deserialize_map(bytes: &[u8]) -> Option<Pairs> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    if data > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let at = 4 + i * 8;
        let klen = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        let vlen = u32::from_le_bytes(bytes.get(at + 4..at + 8)?.try_into().ok()?) as usize;
        let key = bytes.get(data..data.checked_add(klen)?)?.to_vec();
        data = data.checked_add(klen + 1)?;
        let value = bytes.get(data..data.checked_add(vlen)?)?.to_vec();
        data = data.checked_add(vlen + 1)?;
        if data > bytes.len() {
            return None;
        }
        pairs.push((key, value));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_round_trip_and_malformed() {
        let pairs = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b":path".to_vec(), Vec::new()),
        ];
        let bytes = serialize_map(&pairs);
        assert_eq!(deserialize_map(&bytes), Some(pairs));
        assert_eq!(serialize_map::<&[u8], &[u8]>(&[]), vec![0, 0, 0, 0]);
        assert_eq!(deserialize_map(&[]), Some(vec![]));
        assert_eq!(deserialize_map(&[5, 0, 0, 0]), None);
        let mut truncated = bytes.clone();
        truncated.truncate(bytes.len() - 3);
        assert_eq!(deserialize_map(&truncated), None);
        assert_eq!(deserialize_map(&[255, 255, 255, 255, 0]), None);
    }
}
