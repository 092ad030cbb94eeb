//! The request handle both ABIs give their guests: the data of one request lent to the guest for
//! exactly one call ([`HttpData`], [`Lent`]), which call that is ([`Phase`]), and changing it
//! (headers, path, authority, status) with one validation of names and values and one phase rule
//! ([`HttpData::request_head_mut`], [`HttpData::response_head_mut`]). Errors are [`HandleError`];
//! each ABI turns them into its own status (`wrong-phase` or `invalid` in the WIT world,
//! `BadArgument` in Proxy-Wasm).

use crate::filter::{RequestHead, ResponseHead};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Method, StatusCode, Uri};

/// Which call into the guest is running for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// No call (between calls, or a call that is not about the request).
    #[default]
    Idle,
    /// The request head.
    RequestHeaders,
    /// The request body (a chunk, or the whole body).
    RequestBody,
    /// The request trailers.
    RequestTrailers,
    /// The response head.
    ResponseHeaders,
    /// The response body (a chunk, or the whole body).
    ResponseBody,
    /// The response trailers.
    ResponseTrailers,
}

impl Phase {
    /// A phase of the response.
    pub fn is_response(self) -> bool {
        matches!(
            self,
            Phase::ResponseHeaders | Phase::ResponseBody | Phase::ResponseTrailers
        )
    }

    /// A body phase.
    pub fn is_body(self) -> bool {
        matches!(self, Phase::RequestBody | Phase::ResponseBody)
    }
}

/// Why the host refused to change the request or the response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// Not in this phase (the head has left, or the data is not lent to this call).
    #[error("{0} is not possible in this phase")]
    WrongPhase(&'static str),
    /// A bad name, value, path or status.
    #[error("{0}")]
    Invalid(String),
}

/// The data a call lends to the guest: taken from the exchange for the call, given back after it.
pub enum Lent<'a> {
    /// The request head.
    RequestHead(&'a mut RequestHead),
    /// A request body chunk (or the whole body, headers already sent on).
    RequestBody(&'a mut Bytes),
    /// The request trailers.
    RequestTrailers(&'a mut HeaderMap),
    /// The response head.
    ResponseHead(&'a mut ResponseHead),
    /// A response body chunk.
    ResponseBody(&'a mut Bytes),
    /// The response trailers.
    ResponseTrailers(&'a mut HeaderMap),
    /// A whole request body with its head, which has not left yet and may still change.
    WholeRequest(&'a mut RequestHead, &'a mut Bytes),
    /// A whole response body with its head, which has not left yet and may still change.
    WholeResponse(&'a mut ResponseHead, &'a mut Bytes),
}

impl Lent<'_> {
    /// The phase of a call given this data.
    pub fn phase(&self) -> Phase {
        match self {
            Lent::RequestHead(_) => Phase::RequestHeaders,
            Lent::RequestBody(_) | Lent::WholeRequest(..) => Phase::RequestBody,
            Lent::RequestTrailers(_) => Phase::RequestTrailers,
            Lent::ResponseHead(_) => Phase::ResponseHeaders,
            Lent::ResponseBody(_) | Lent::WholeResponse(..) => Phase::ResponseBody,
            Lent::ResponseTrailers(_) => Phase::ResponseTrailers,
        }
    }
}

fn placeholder_req() -> RequestHead {
    RequestHead {
        method: Method::GET,
        uri: Uri::default(),
        headers: HeaderMap::new(),
    }
}

fn take_resp(r: &mut ResponseHead) -> ResponseHead {
    let status = r.status;
    std::mem::replace(
        r,
        ResponseHead {
            status,
            headers: HeaderMap::new(),
            upstream: r.upstream.clone(),
        },
    )
}

/// What the host holds of one request for the guest: what the running call was lent, and copies of
/// heads already sent on (readable by later calls, changing nothing).
#[derive(Debug, Default)]
pub struct HttpData {
    /// The call running.
    pub phase: Phase,
    /// The call is a whole-body one: its direction's head has not left and may change.
    pub whole: bool,
    /// The request head.
    pub req: Option<RequestHead>,
    /// The response head.
    pub resp: Option<ResponseHead>,
    /// The request body lent to a body call.
    pub req_body: Option<Bytes>,
    /// The response body lent to a body call.
    pub resp_body: Option<Bytes>,
    /// The request trailers lent to a trailers call.
    pub req_trailers: Option<HeaderMap>,
    /// The response trailers lent to a trailers call.
    pub resp_trailers: Option<HeaderMap>,
}

/// Copies of the heads whose handler or callback did not run (a phase the filter does not use, or
/// one its config skips), taken as they passed the stage, for the calls that do run after them: as
/// in Envoy, a later call (a body call, the other direction's, the end of the request) reads the
/// heads already seen, whether or not their own call ran. [`SkippedHeads::hand_in`] puts them in
/// the request's [`HttpData`] when the guest is next entered for it, so a skipped phase touches no
/// instance. Both ABIs keep it boxed and make it only when a head is skipped: inline, the two heads
/// made every stage's context larger and were moved at every request's end.
#[derive(Debug, Default)]
pub struct SkippedHeads {
    req: Option<RequestHead>,
    resp: Option<ResponseHead>,
}

impl SkippedHeads {
    /// Keeps a copy of the request head.
    pub fn keep_request(&mut self, req: &RequestHead) {
        self.req = Some(req.clone());
    }

    /// Keeps a copy of the response head.
    pub fn keep_response(&mut self, resp: &ResponseHead) {
        self.resp = Some(resp.clone());
    }

    /// Keeps a copy of the head in `lent`, if it is one.
    pub fn keep(&mut self, lent: &Lent<'_>) {
        match lent {
            Lent::RequestHead(r) => self.keep_request(r),
            Lent::ResponseHead(r) => self.keep_response(r),
            _ => {}
        }
    }

    /// Gives the copies to the request's data (where a head its call was lent would be kept).
    #[inline]
    pub fn hand_in(&mut self, data: &mut HttpData) {
        if let Some(r) = self.req.take() {
            data.req = Some(r);
        }
        if let Some(r) = self.resp.take() {
            data.resp = Some(r);
        }
    }
}

impl HttpData {
    /// Takes `lent` for one call (the exchange keeps placeholders meanwhile).
    pub fn lend(&mut self, lent: &mut Lent<'_>) {
        self.phase = lent.phase();
        self.whole = matches!(lent, Lent::WholeRequest(..) | Lent::WholeResponse(..));
        match lent {
            Lent::RequestHead(r) => self.req = Some(std::mem::replace(*r, placeholder_req())),
            Lent::RequestBody(b) => self.req_body = Some(std::mem::take(*b)),
            Lent::RequestTrailers(t) => self.req_trailers = Some(std::mem::take(*t)),
            Lent::ResponseHead(r) => self.resp = Some(take_resp(r)),
            Lent::ResponseBody(b) => self.resp_body = Some(std::mem::take(*b)),
            Lent::ResponseTrailers(t) => self.resp_trailers = Some(std::mem::take(*t)),
            Lent::WholeRequest(r, b) => {
                self.req = Some(std::mem::replace(*r, placeholder_req()));
                self.req_body = Some(std::mem::take(*b));
            }
            Lent::WholeResponse(r, b) => {
                self.resp = Some(take_resp(r));
                self.resp_body = Some(std::mem::take(*b));
            }
        }
    }

    /// Gives `lent` back after the call, as the guest left it. A head stays readable as a copy when
    /// `keep_head` (or after a whole-body call, whose body phase may still read it).
    pub fn take_back(&mut self, lent: &mut Lent<'_>, keep_head: bool) {
        self.phase = Phase::Idle;
        self.whole = false;
        fn back<T: Clone>(slot: &mut Option<T>, to: &mut T, keep: bool) {
            if let Some(v) = slot.take() {
                if keep {
                    *slot = Some(v.clone());
                }
                *to = v;
            }
        }
        match lent {
            Lent::RequestHead(r) => back(&mut self.req, r, keep_head),
            Lent::RequestBody(b) => **b = self.req_body.take().unwrap_or_default(),
            Lent::RequestTrailers(t) => **t = self.req_trailers.take().unwrap_or_default(),
            Lent::ResponseHead(r) => back(&mut self.resp, r, keep_head),
            Lent::ResponseBody(b) => **b = self.resp_body.take().unwrap_or_default(),
            Lent::ResponseTrailers(t) => **t = self.resp_trailers.take().unwrap_or_default(),
            Lent::WholeRequest(r, b) => {
                **b = self.req_body.take().unwrap_or_default();
                back(&mut self.req, r, true);
            }
            Lent::WholeResponse(r, b) => {
                **b = self.resp_body.take().unwrap_or_default();
                back(&mut self.resp, r, true);
            }
        }
    }

    /// Forgets the request (a warm instance goes back to its pool).
    pub fn clear(&mut self) {
        *self = HttpData::default();
    }

    /// The request head, if this call may change it: its headers call, or a whole-body call.
    /// `what` names the change for the error.
    pub fn request_head_mut(
        &mut self,
        what: &'static str,
    ) -> Result<&mut RequestHead, HandleError> {
        match (self.phase, self.req.as_mut()) {
            (Phase::RequestHeaders, Some(r)) => Ok(r),
            (Phase::RequestBody, Some(r)) if self.whole => Ok(r),
            _ => Err(HandleError::WrongPhase(what)),
        }
    }

    /// The response head, if this call may change it: its headers call, or a whole-body call.
    pub fn response_head_mut(
        &mut self,
        what: &'static str,
    ) -> Result<&mut ResponseHead, HandleError> {
        match (self.phase, self.resp.as_mut()) {
            (Phase::ResponseHeaders, Some(r)) => Ok(r),
            (Phase::ResponseBody, Some(r)) if self.whole => Ok(r),
            _ => Err(HandleError::WrongPhase(what)),
        }
    }

    /// Replaces the body of the running body call in the request (`response` false) or response
    /// direction; any other call may not.
    pub fn replace_body(&mut self, response: bool, body: Bytes) -> Result<(), HandleError> {
        match (self.phase, response) {
            (Phase::RequestBody, false) => self.req_body = Some(body),
            (Phase::ResponseBody, true) => self.resp_body = Some(body),
            (_, false) => return Err(HandleError::WrongPhase("replacing the request body")),
            (_, true) => return Err(HandleError::WrongPhase("replacing the response body")),
        }
        Ok(())
    }

    /// The body of the running body call in the request (`response` false) or response direction.
    pub fn body_mut(&mut self, response: bool) -> Option<&mut Bytes> {
        match (self.phase, response) {
            (Phase::RequestBody, false) => self.req_body.as_mut(),
            (Phase::ResponseBody, true) => self.resp_body.as_mut(),
            _ => None,
        }
    }
}

/// A header name a plugin gave (any case; stored lowercase).
pub fn header_name(name: &[u8]) -> Result<HeaderName, HandleError> {
    HeaderName::from_bytes(name).map_err(|_| {
        HandleError::Invalid(format!(
            "bad header name `{}`",
            String::from_utf8_lossy(name)
        ))
    })
}

/// A header value a plugin gave for header `name`: CR, LF, NUL and other control bytes are
/// refused.
pub fn header_value(name: &[u8], v: &[u8]) -> Result<HeaderValue, HandleError> {
    HeaderValue::from_bytes(v).map_err(|_| {
        HandleError::Invalid(format!(
            "bad value for header `{}`",
            String::from_utf8_lossy(name)
        ))
    })
}

/// A change to a header map.
pub enum HeaderEdit<'a> {
    /// Replaces every value of the name with this one.
    Set(HeaderName, HeaderValue),
    /// Adds a value.
    Append(HeaderName, HeaderValue),
    /// Removes every value of the name.
    Remove(&'a HeaderName),
}

/// Applies `edit` to `h`.
pub fn edit_headers(h: &mut HeaderMap, edit: HeaderEdit<'_>) {
    match edit {
        HeaderEdit::Set(n, v) => {
            h.insert(n, v);
        }
        HeaderEdit::Append(n, v) => {
            h.append(n, v);
        }
        HeaderEdit::Remove(n) => {
            h.remove(n);
        }
    }
}

/// Replaces the path and query of `req`; `*` is taken only when `asterisk` (Proxy-Wasm's `:path`),
/// anything else must start with `/`.
pub fn set_path_with_query(
    req: &mut RequestHead,
    pq: &[u8],
    asterisk: bool,
) -> Result<(), HandleError> {
    if !(pq.starts_with(b"/") || (asterisk && pq == b"*")) {
        return Err(HandleError::Invalid("the path must start with `/`".into()));
    }
    let pq = http::uri::PathAndQuery::try_from(pq)
        .map_err(|e| HandleError::Invalid(format!("bad path: {e}")))?;
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    req.uri = Uri::from_parts(parts).map_err(|e| HandleError::Invalid(format!("bad path: {e}")))?;
    Ok(())
}

/// Replaces the authority of `req`: the `host` header, and the URI's authority when it has one.
pub fn set_authority(req: &mut RequestHead, authority: &[u8]) -> Result<(), HandleError> {
    let host = header_value(HOST.as_str().as_bytes(), authority)?;
    if req.uri.authority().is_some() {
        let a = http::uri::Authority::try_from(authority)
            .map_err(|e| HandleError::Invalid(format!("bad authority: {e}")))?;
        let mut parts = req.uri.clone().into_parts();
        parts.authority = Some(a);
        req.uri = Uri::from_parts(parts)
            .map_err(|e| HandleError::Invalid(format!("bad authority: {e}")))?;
    }
    req.headers.insert(HOST, host);
    Ok(())
}

/// A status a plugin gave.
pub fn status(code: u16) -> Result<StatusCode, HandleError> {
    StatusCode::from_u16(code).map_err(|_| HandleError::Invalid(format!("bad status {code}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> RequestHead {
        RequestHead {
            method: Method::GET,
            uri: "/a?b=1".parse().unwrap(),
            headers: HeaderMap::new(),
        }
    }

    #[test]
    fn a_head_may_change_in_its_own_call_or_a_whole_body_call_only() {
        let mut data = HttpData::default();
        let mut head = req();
        let mut lent = Lent::RequestHead(&mut head);
        data.lend(&mut lent);
        assert!(data.request_head_mut("x").is_ok());
        assert_eq!(
            data.response_head_mut("changing the status").unwrap_err(),
            HandleError::WrongPhase("changing the status")
        );
        data.request_head_mut("x")
            .unwrap()
            .headers
            .insert("x-a", HeaderValue::from_static("1"));
        data.take_back(&mut lent, true);
        assert_eq!(head.headers["x-a"], "1");
        assert_eq!(data.phase, Phase::Idle);

        let mut body = Bytes::from_static(b"chunk");
        let mut lent = Lent::RequestBody(&mut body);
        data.lend(&mut lent);
        assert!(data.req.is_some(), "the head stays readable");
        assert!(data.request_head_mut("x").is_err(), "but it has left");
        *data.body_mut(false).unwrap() = Bytes::from_static(b"new");
        assert!(data.body_mut(true).is_none());
        data.take_back(&mut lent, true);
        assert_eq!(&body[..], b"new");

        let mut lent = Lent::WholeRequest(&mut head, &mut body);
        data.lend(&mut lent);
        assert!(data.request_head_mut("x").is_ok());
        data.take_back(&mut lent, false);
        assert!(
            data.req.is_some(),
            "a whole-body call keeps its head readable"
        );
    }

    #[test]
    fn paths_authorities_and_statuses_are_checked() {
        let mut r = req();
        set_path_with_query(&mut r, b"/x?y", false).unwrap();
        assert_eq!(r.uri, "/x?y");
        assert!(set_path_with_query(&mut r, b"x", false).is_err());
        assert!(set_path_with_query(&mut r, b"*", false).is_err());
        assert!(set_path_with_query(&mut r, b"*", true).is_ok());
        set_authority(&mut r, b"example.com").unwrap();
        assert_eq!(r.headers[HOST], "example.com");
        assert!(set_authority(&mut r, b"a\nb").is_err());
        assert!(status(99).is_err());
        assert_eq!(status(204).unwrap(), StatusCode::NO_CONTENT);
        assert!(header_name(b"bad name").is_err());
        assert_eq!(header_name(b"X-Up").unwrap(), "x-up");
        assert!(header_value(b"x", b"caf\xc3\xa9").is_ok());
        assert!(header_value(b"x", b"a\r\nb: c").is_err());
    }
}
