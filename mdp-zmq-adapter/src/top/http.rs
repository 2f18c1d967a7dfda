//! Just enough HTTP/1.1 to scrape a metrics page: one `GET` over a
//! [`TcpStream`] with `Connection: close`, a body read by
//! `Content-Length`, as chunks (`Transfer-Encoding: chunked`), or to the
//! end of the stream. Plain `http://` only, no redirects, no proxies.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The largest response read: a broker with `max_services` services writes
/// far less; past this the peer is not a metrics page.
pub const MAX_RESPONSE: usize = 64 << 20;

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not `[http://]host[:port][/path]`.
    #[error("{0}")]
    Url(String),
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The `host:port` looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// No address of the host took the connection.
    #[error("cannot connect to {host}: {source}")]
    Connect {
        /// The `host:port` connected to.
        host: String,
        /// The error of the last address tried.
        #[source]
        source: io::Error,
    },
    /// Sending the request or reading the response failed, or took longer
    /// than the timeout.
    #[error("reading from {host}: {source}")]
    Io {
        /// The `host:port` read from.
        host: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The server answered with a status other than 200.
    #[error("{url} answered {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status line's code and reason, e.g. `404 Not Found`.
        status: String,
    },
    /// The response is not HTTP, or breaks off.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The response is longer than [`MAX_RESPONSE`].
    #[error("the response is longer than {MAX_RESPONSE} bytes")]
    TooLarge,
}

/// Where to scrape: parsed from `http://host:port/path`, or `host:port`
/// (then the path is `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` as given (an IPv6 address in brackets), 80 when the URL
    /// names no port; also sent as the `Host` header.
    pub authority: String,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl Target {
    /// Parses `url`: an optional `http://`, a host (`[...]` for IPv6), an
    /// optional `:port` (80 without), an optional path (`/metrics`
    /// without).
    pub fn parse(url: &str) -> Result<Target, FetchError> {
        let bad = |why: &str| FetchError::Url(format!("{url:?}: {why}; expected http://HOST:PORT/PATH"));
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => return Err(bad(&format!("{scheme}:// is not supported, only http://"))),
            None => url,
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/metrics".to_owned()),
        };
        if authority.contains('@') {
            return Err(bad("user names are not supported"));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let (host, after) = inner.split_once(']').ok_or_else(|| bad("an unclosed `[`"))?;
            match after {
                "" => (host, None),
                p => (host, Some(p.strip_prefix(':').ok_or_else(|| bad("text after `]`"))?)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p.parse::<u16>().map_err(|_| bad(&format!("{p:?} is not a port")))?,
        };
        let authority = if authority.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Ok(Target { authority, path })
    }

    /// The target as a URL.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

/// GETs `target` and returns the body of a 200 response, as text (bytes
/// that are not UTF-8 become U+FFFD). Connecting, sending and reading
/// together take at most about `timeout`.
pub fn fetch(target: &Target, timeout: Duration) -> Result<String, FetchError> {
    let deadline = Instant::now() + timeout;
    let host = target.authority.clone();
    let addrs: Vec<SocketAddr> = target
        .authority
        .to_socket_addrs()
        .map_err(|source| FetchError::Resolve { host: host.clone(), source })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for addr in addrs {
        let left = left(deadline).map_err(|source| FetchError::Connect { host: host.clone(), source })?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or(FetchError::Connect { host: host.clone(), source: last })?;
    let io_error = |source| FetchError::Io { host: host.clone(), source };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mdp-top\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.set_write_timeout(Some(left(deadline).map_err(io_error)?)).map_err(io_error)?;
    stream.write_all(request.as_bytes()).map_err(io_error)?;

    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = loop {
            stream.set_read_timeout(Some(left(deadline).map_err(io_error)?)).map_err(io_error)?;
            match stream.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e)),
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE {
            return Err(FetchError::TooLarge);
        }
        // A server that keeps the connection open despite `close` is done
        // once the body is complete.
        if let Some(response) = response(&buf, n == 0)? {
            let Response { status, body } = response;
            if status.split(' ').next() != Some("200") {
                return Err(FetchError::Status { url: target.url(), status });
            }
            return Ok(String::from_utf8_lossy(&body).into_owned());
        }
        if n == 0 {
            return Err(FetchError::Malformed("the connection closed before the response ended".to_owned()));
        }
    }
}

/// The time left until `deadline`, or a timeout error if none is.
fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    } else {
        Ok(left)
    }
}

/// A whole response.
#[derive(Debug, PartialEq)]
struct Response {
    /// The status line's code and reason, e.g. `200 OK`.
    status: String,
    body: Vec<u8>,
}

/// The response in `buf` if it is all there (`eof`: no more will come), or
/// `None` if more must be read.
fn response(buf: &[u8], eof: bool) -> Result<Option<Response>, FetchError> {
    let malformed = |why: &str| FetchError::Malformed(why.to_owned());
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if eof { Err(malformed("the headers do not end")) } else { Ok(None) };
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| malformed("headers that are not text"))?;
    let body = &buf[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = match status_line.split_once(' ') {
        Some((version, status)) if version.starts_with("HTTP/1.") => status.trim().to_owned(),
        _ => return Err(FetchError::Malformed(format!("not an HTTP/1 status line: {status_line:?}"))),
    };
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| malformed("a Content-Length that is not a number"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().split(',').any(|c| c.trim() == "chunked");
        }
    }
    let body = if chunked {
        match dechunk(body)? {
            Some(body) => body,
            None if eof => return Err(malformed("the chunked body breaks off")),
            None => return Ok(None),
        }
    } else if let Some(length) = length {
        match body.get(..length) {
            Some(body) => body.to_vec(),
            None if eof => return Err(malformed("the body is shorter than its Content-Length")),
            None => return Ok(None),
        }
    } else if eof {
        body.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Response { status, body }))
}

/// A chunked body decoded, or `None` if it is not all there yet.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, FetchError> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(rest, b"\r\n") else { return Ok(None) };
        let line = std::str::from_utf8(&rest[..eol]).map_err(|_| FetchError::Malformed("a chunk size".to_owned()))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| FetchError::Malformed(format!("{size:?} is not a chunk size")))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            // Trailers, if any, then an empty line.
            return Ok(find(rest, b"\r\n").map(|_| body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        if &rest[size..size + 2] != b"\r\n" {
            return Err(FetchError::Malformed("a chunk does not end in CRLF".to_owned()));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_by_its_length_or_chunks_or_the_end() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(response(&whole[..whole.len() - 1], false).unwrap(), None);
        let r = response(whole, false).unwrap().unwrap();
        assert_eq!((r.status.as_str(), r.body.as_slice()), ("200 OK", &b"hello"[..]));
        assert!(response(&whole[..whole.len() - 1], true).is_err());

        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        assert_eq!(response(&chunked[..chunked.len() - 2], false).unwrap(), None);
        assert_eq!(response(chunked, false).unwrap().unwrap().body, b"hello");

        let to_end = b"HTTP/1.0 200 OK\r\n\r\nhello";
        assert_eq!(response(to_end, false).unwrap(), None);
        assert_eq!(response(to_end, true).unwrap().unwrap().body, b"hello");

        assert!(response(b"SSH-2.0-OpenSSH\r\n\r\n", true).is_err());
    }

    #[test]
    fn the_target_takes_a_url_or_a_bare_address() {
        let t = |url| Target::parse(url).unwrap();
        assert_eq!(t("http://127.0.0.1:9464/metrics"), t("127.0.0.1:9464"));
        assert_eq!(t("127.0.0.1:9464").path, "/metrics");
        assert_eq!(t("HTTP://localhost/m?x=1"), Target { authority: "localhost:80".into(), path: "/m?x=1".into() });
        assert_eq!(t("[::1]:9464").authority, "[::1]:9464");
        assert_eq!(t("http://[::1]/").url(), "http://[::1]:80/");
        for bad in ["https://127.0.0.1:9464/metrics", ":9464", "127.0.0.1:port", "[::1", "u@host:1"] {
            assert!(matches!(Target::parse(bad), Err(FetchError::Url(_))), "{bad}");
        }
    }
}
