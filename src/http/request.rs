//! The request as handlers see it: query parameters, headers, peer address and a size-checked
//! body that is parsed only when a handler reaches input validation (docs/api.md §2.4 check order:
//! the body limit is step 2, while a malformed body or wrong content type is step 9).

use std::net::{IpAddr, SocketAddr};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path};
use axum::http::{HeaderMap, Method, Request, header, request::Parts};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};

use super::AppState;
use crate::error::ApiError;

/// Query parameters in request order. Parameters with an empty value count as absent (§2.1).
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            raw.map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    /// The last value of a parameter (later values override earlier ones, as in Django).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// An API request whose body was read within the route's size limit. `PUBLISH` selects the
/// publish limit (`publish_max_bytes`) instead of `max_body_bytes`.
pub struct ApiRequest<const PUBLISH: bool = false> {
    pub method: Method,
    pub path: String,
    pub query: Query,
    pub headers: HeaderMap,
    pub client_ip: IpAddr,
    pub body: Bytes,
}

pub type PublishRequest = ApiRequest<true>;

impl<const PUBLISH: bool> FromRequest<AppState> for ApiRequest<PUBLISH> {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, app: &AppState) -> Result<Self, ApiError> {
        let limit = if PUBLISH {
            app.config.publish_max_bytes
        } else {
            app.config.max_body_bytes
        };
        let (parts, body) = req.into_parts();
        // The header is checked first, then the bytes actually read: a chunked body cannot
        // slip past the limit (§2.7).
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.is::<LengthLimitError>() => {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            // The client went away or sent a broken body; nobody is left to read an answer.
            Err(err) => return Err(ApiError::BadRequest(format!("Could not read body: {err}"))),
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        let client_ip = client_ip(
            peer,
            &parts.headers,
            app.config.trust_proxy,
            &app.config.trusted_proxies,
        );
        Ok(ApiRequest {
            query: Query::parse(parts.uri.query()),
            path: parts.uri.path().to_owned(),
            method: parts.method,
            headers: parts.headers,
            client_ip,
            body,
        })
    }
}

/// The client's address (docs/api.md §2.8). When the socket peer is a trusted proxy (`trust_proxy`, or
/// a peer in `trusted_proxies`), `X-Forwarded-For` is walked from the right, each proxy having
/// appended the address it got the request from, and the first hop that is not a trusted proxy
/// is the client (the leftmost, if all are). The leftmost hop is whatever the client wrote, so it
/// is never believed on its own: a client cannot pick itself a fresh rate-limit budget.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trust_peer: bool,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !trust_peer && !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return ip,
            // Garbage in the chain: the last address vouched for is as far as trust goes.
            Err(_) => return client,
        }
    }
    client
}

/// The body's media type without parameters, lower-cased; `None` without a header.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?;
    let text = String::from_utf8_lossy(value.as_bytes());
    Some(
        text.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Body fields as JSON values; form and multipart fields are strings.
pub type Fields = Map<String, Value>;

fn python_type_name(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "list",
        Value::String(_) => "str",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::Bool(_) => "bool",
        Value::Null => "NoneType",
        Value::Object(_) => "dict",
    }
}

impl<const PUBLISH: bool> ApiRequest<PUBLISH> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// Parses the body (input validation, check-order step 9). An empty body is `{}` whatever
    /// its content type.
    pub async fn fields(&self) -> Result<Fields, ApiError> {
        if self.body.is_empty() {
            return Ok(Fields::new());
        }
        let media = media_type(&self.headers).unwrap_or_default();
        match media.as_str() {
            "application/json" => {
                let value: Value = serde_json::from_slice(&self.body)
                    .map_err(|err| ApiError::BadRequest(format!("JSON parse error - {err}")))?;
                match value {
                    Value::Object(map) => Ok(map),
                    other => Err(ApiError::field(
                        "non_field_errors",
                        format!(
                            "Invalid data. Expected a dictionary, but got {}.",
                            python_type_name(&other)
                        ),
                    )),
                }
            }
            "application/x-www-form-urlencoded" => Ok(form_fields(&self.body)),
            "multipart/form-data" => self.multipart_fields().await,
            _ => Err(ApiError::UnsupportedMediaType(media)),
        }
    }

    async fn multipart_fields(&self) -> Result<Fields, ApiError> {
        let content_type = self
            .header(header::CONTENT_TYPE.as_str())
            .unwrap_or_default();
        let boundary = multer::parse_boundary(content_type).map_err(|_| {
            ApiError::BadRequest(
                "Multipart form parse error - Invalid boundary in multipart: None".into(),
            )
        })?;
        let body = self.body.clone();
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut fields = Fields::new();
        let parse_error = |err: multer::Error| {
            ApiError::BadRequest(format!("Multipart form parse error - {err}"))
        };
        while let Some(field) = multipart.next_field().await.map_err(parse_error)? {
            let Some(name) = field.name().map(str::to_owned) else {
                continue;
            };
            let text = field.text().await.map_err(parse_error)?;
            fields.insert(name, Value::String(text));
        }
        Ok(fields)
    }

    /// A key-like body field (`_api_key`, `_user_key`), read leniently before validation: a body
    /// that does not parse contributes no key (§2.4).
    pub async fn body_key(&self, name: &str) -> Option<String> {
        if self.body.is_empty() {
            return None;
        }
        let fields = match media_type(&self.headers).as_deref() {
            Some("application/json") => match serde_json::from_slice(&self.body) {
                Ok(Value::Object(map)) => map,
                _ => return None,
            },
            Some("application/x-www-form-urlencoded") => form_fields(&self.body),
            Some("multipart/form-data") => self.multipart_fields().await.ok()?,
            _ => return None,
        };
        match fields.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => None,
        }
    }
}

fn form_fields(body: &[u8]) -> Fields {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

/// Path parameters; a parameter that cannot be decoded means no route matched (404).
pub struct PathParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        Ok(PathParams(params))
    }
}

impl PathParams {
    fn raw(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// A name parameter, lower-cased as names are stored (§2.1).
    pub fn name(&self, param: &str) -> String {
        self.raw(param).to_lowercase()
    }

    /// A numeric id parameter; anything but a positive integer addresses nothing.
    pub fn id(&self, param: &str) -> Result<i64, ApiError> {
        self.raw(param)
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or(ApiError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn nets(raw: &[&str]) -> Vec<ipnet::IpNet> {
        raw.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let peer = ip("203.0.113.9");
        assert_eq!(client_ip(peer, &headers(&["1.2.3.4"]), false, &[]), peer);
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(peer, &headers(&["1.2.3.4"]), false, &trusted),
            peer
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let proxy = ip("10.0.0.2");
        let trusted = nets(&["10.0.0.0/8"]);
        // The client wrote 1.2.3.4; the proxy appended the address it saw.
        let forwarded = headers(&["1.2.3.4, 198.51.100.7"]);
        assert_eq!(
            client_ip(proxy, &forwarded, false, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(proxy, &forwarded, true, &[]), ip("198.51.100.7"));
        // Two proxies in a row, the second also in the header, over two header lines.
        let forwarded = headers(&["1.2.3.4, 198.51.100.7", "10.1.1.1"]);
        assert_eq!(
            client_ip(proxy, &forwarded, false, &trusted),
            ip("198.51.100.7")
        );
        // Every hop trusted: the leftmost.
        let forwarded = headers(&["10.9.9.9, 10.1.1.1"]);
        assert_eq!(
            client_ip(proxy, &forwarded, false, &trusted),
            ip("10.9.9.9")
        );
        // Garbage stops the walk at the last address vouched for.
        let forwarded = headers(&["1.2.3.4, nonsense, 10.1.1.1"]);
        assert_eq!(
            client_ip(proxy, &forwarded, false, &trusted),
            ip("10.1.1.1")
        );
        // No header: the proxy itself.
        assert_eq!(client_ip(proxy, &headers(&[]), true, &[]), proxy);
    }
}
