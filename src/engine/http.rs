//! Just enough HTTP/1.1 for the engine's API, over a unix socket.
//!
//! The Docker Engine API is HTTP on `/var/run/docker.sock`; caixa's is the
//! same idea on its own socket. One request per connection (`Connection:
//! close`), bodies sized by `Content-Length`: a few dozen lines both ways,
//! which a student can read whole, instead of an async HTTP stack.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

/// The largest request body accepted: an image archive for `load`.
pub const MAX_BODY: u64 = 4 << 30;
/// The largest JSON body or header block read into memory.
pub const MAX_JSON: u64 = 16 << 20;

/// One request, as the server reads it.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`, `DELETE`…
    pub method: String,
    /// The path, without the query and without a `/v1.xx` version prefix.
    pub path: String,
    /// The query's `key=value` pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The declared body length.
    pub content_length: u64,
    /// Whether the body comes in chunks (`Transfer-Encoding: chunked`, as
    /// the Docker CLI sends an archive to load) instead of a known length.
    pub chunked: bool,
}

impl Request {
    /// The value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether query parameter `key` is set to a true value (`1`, `true`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("1" | "true" | "True"))
    }
}

/// Reads a request's head from `reader`; its body is what follows.
pub fn read_request(reader: &mut impl BufRead) -> std::io::Result<Request> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let mut line = String::new();
    (&mut *reader).take(8192).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(bad("not an HTTP request line"));
    };
    let mut content_length = 0;
    let mut chunked = false;
    let mut head = 0usize;
    loop {
        let mut header = String::new();
        let n = (&mut *reader).take(8192).read_line(&mut header)?;
        head += n;
        if n == 0 || header == "\r\n" || header == "\n" {
            break;
        }
        if head as u64 > MAX_JSON {
            return Err(bad("headers too large"));
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("bad Content-Length"))?;
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.trim().eq_ignore_ascii_case("chunked");
            }
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // The Docker CLI prefixes every path with its API version: /v1.41/…
    let path = match path.strip_prefix("/v1.") {
        Some(rest) => rest.find('/').map_or(path, |i| &rest[i..]),
        None => path,
    };
    Ok(Request {
        method: method.to_string(),
        path: percent_decode(path),
        query: query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect(),
        content_length,
        chunked,
    })
}

/// The body of `request`, read from `reader` (what follows its head), at
/// most `limit` bytes: an error past that, never a silent cut.
pub fn body<'a>(request: &Request, reader: &'a mut dyn BufRead, limit: u64) -> Box<dyn Read + 'a> {
    if request.chunked {
        Box::new(Bounded {
            inner: Chunked {
                inner: reader,
                left: 0,
                done: false,
            },
            left: limit,
        })
    } else {
        Box::new(Bounded {
            inner: reader.take(request.content_length),
            left: limit,
        })
    }
}

/// A reader that fails once more than `left` bytes have come.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the request body is too large",
            )
        })?;
        Ok(n)
    }
}

/// `Transfer-Encoding: chunked`: `SIZE-IN-HEX\r\n`, that many bytes,
/// `\r\n`, again, until a chunk of size 0.
struct Chunked<'a> {
    inner: &'a mut dyn BufRead,
    left: u64,
    done: bool,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            (&mut *self.inner).take(1024).read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            if self.left == 0 {
                // Trailers, if any, end with an empty line.
                loop {
                    let mut trailer = String::new();
                    if (&mut *self.inner).take(8192).read_line(&mut trailer)? == 0
                        || trailer.trim().is_empty()
                    {
                        break;
                    }
                }
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(bad("the body ended inside a chunk"));
        }
        self.left -= n as u64;
        if self.left == 0 {
            let mut end = [0u8; 2];
            self.inner.read_exact(&mut end)?;
        }
        Ok(n)
    }
}

/// Writes a response's status line and headers: `length` is `None` for a
/// body that ends when the connection closes; `extra` holds more header
/// lines, each ending in `\r\n`.
pub fn write_head(
    stream: &mut impl Write,
    status: u16,
    content_type: &str,
    length: Option<u64>,
    extra: &str,
) -> std::io::Result<()> {
    let length = length
        .map(|l| format!("Content-Length: {l}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\n{length}{extra}Connection: close\r\n\r\n",
        reason(status)
    )
}

/// The engine's own headers (Docker's CLI reads `Api-Version`).
const ENGINE_HEADERS: &str = "Api-Version: 1.41\r\nServer: caixa\r\n";

/// Writes a whole response with a `Content-Length` and closes the exchange.
pub fn respond(
    stream: &mut impl Write,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    write_head(
        stream,
        status,
        content_type,
        Some(body.len() as u64),
        ENGINE_HEADERS,
    )?;
    stream.write_all(body)?;
    stream.flush()
}

/// Writes the head of a response whose body streams until the connection
/// closes (a pull's progress).
pub fn respond_streaming(stream: &mut impl Write, content_type: &str) -> std::io::Result<()> {
    write_head(stream, 200, content_type, None, ENGINE_HEADERS)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        _ => "Internal Server Error",
    }
}

/// A response, as the client reads it.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, whole.
    pub body: Vec<u8>,
}

/// Sends one request on `stream` and reads the whole answer.
pub fn call(
    mut stream: UnixStream,
    method: &str,
    target: &str,
    body: Option<(&str, &mut dyn Read, u64)>,
    on_chunk: &mut dyn FnMut(&[u8]),
) -> std::io::Result<Response> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    match body {
        Some((content_type, reader, len)) => {
            write!(
                stream,
                "{method} {target} HTTP/1.1\r\nHost: caixa\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            )?;
            let sent = std::io::copy(&mut reader.take(len), &mut stream)?;
            if sent != len {
                return Err(bad("the request body ended early"));
            }
        }
        None => write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: caixa\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
    }
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    (&mut reader).take(8192).read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("not an HTTP answer"))?;
    let mut length = None;
    loop {
        let mut header = String::new();
        if (&mut reader).take(8192).read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<u64>().ok();
            }
        }
    }
    // A sized body is read whole; an unsized one is also given to
    // `on_chunk` as it comes, until the daemon closes the connection.
    let mut body = Vec::new();
    match length {
        Some(len) => {
            (&mut reader)
                .take(len.min(MAX_JSON))
                .read_to_end(&mut body)?;
        }
        None => {
            let mut buf = [0u8; 8192];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                on_chunk(&buf[..n]);
                if body.len() < MAX_JSON as usize {
                    body.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
    Ok(Response { status, body })
}

/// `%41` → `A`, `+` stays `+` (paths and Docker's query values).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::client::percent_encode;

    #[test]
    fn a_docker_cli_request_parses() {
        let raw = b"POST /v1.41/containers/create?name=web%201&x HTTP/1.1\r\nHost: docker\r\nContent-Length: 2\r\n\r\n{}";
        let mut reader = &raw[..];
        let req = read_request(&mut reader).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/containers/create");
        assert_eq!(req.param("name"), Some("web 1"));
        assert_eq!(req.content_length, 2);
        assert_eq!(reader, b"{}");
        assert_eq!(percent_decode(&percent_encode("a b/c:d")), "a b/c:d");
        let raw = b"POST /images/load HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let mut reader = &raw[..];
        let req = read_request(&mut reader).unwrap();
        let mut got = String::new();
        body(&req, &mut reader, 100)
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "abcde");
        let mut reader = &raw[..];
        let req = read_request(&mut reader).unwrap();
        assert!(body(&req, &mut reader, 4).read_to_string(&mut got).is_err());
        assert_eq!(percent_decode("100%"), "100%");
    }
}
