//! The one HTTP/1.1 client of the tests and benches, written against std alone so that what is
//! measured is muster, not a client library: [`Client`] sends one request per connection
//! (`Connection: close`), [`KeepAlive`] keeps one connection for many requests (the KV bench's
//! writers).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An HTTP answer: status, lower-cased headers, body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// How requests are sent: the connect and read timeouts, and whether the body is declared JSON
/// (etcd's gateway wants it; muster reads bodies whatever they are declared).
#[derive(Clone, Copy, Debug)]
pub struct Client {
    pub connect: Duration,
    pub read: Duration,
    pub json: bool,
}

impl Client {
    /// The tests' client: patient, since a blocking query may wait 20 s for its answer.
    pub const TEST: Client = Client::new(Duration::from_secs(2), Duration::from_secs(60));

    pub const fn new(connect: Duration, read: Duration) -> Client {
        Client {
            connect,
            read,
            json: false,
        }
    }

    /// The same client, declaring every body `application/json`.
    pub const fn json(self) -> Client {
        Client { json: true, ..self }
    }

    /// One request over a fresh connection. None on connection failure or a garbled answer.
    pub fn send(&self, addr: &str, method: &str, path: &str, body: &[u8]) -> Option<Answer> {
        let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, self.connect).ok()?;
        s.set_read_timeout(Some(self.read)).ok()?;
        // Head and body in one write: one segment for a small request.
        let mut request =
            request_head(method, path, addr, self.json, body.len(), true).into_bytes();
        request.extend_from_slice(body);
        s.write_all(&request).ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let mut lines = head.lines();
        let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        let mut body = buf[split + 4..].to_vec();
        if header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            body = dechunk(&String::from_utf8_lossy(&body)).into_bytes();
        }
        Some((status, headers, body))
    }

    /// [`Client::send`], the body as text.
    pub fn text(&self, addr: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
        let (status, _, body) = self.send(addr, method, path, body)?;
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// `GET path` parsed as JSON; Null when there is no answer or it is not JSON.
    pub fn json_get(&self, addr: &str, path: &str) -> serde_json::Value {
        self.send(addr, "GET", path, b"")
            .and_then(|(_, _, b)| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// A bodiless request with [`Client::TEST`]; (status, body), or None on connection failure.
pub fn http(addr: &str, method: &str, path: &str) -> Option<(u16, String)> {
    Client::TEST.text(addr, method, path, b"")
}

/// A full exchange with [`Client::TEST`]. None on connection failure.
pub fn http_full(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<Answer> {
    Client::TEST.send(addr, method, path, body)
}

/// The value of header `name` (lower case) in an answer's headers.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn request_head(
    method: &str,
    path: &str,
    host: &str,
    json: bool,
    len: usize,
    close: bool,
) -> String {
    let ctype = if json {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{ctype}Content-Length: {len}\r\n{connection}\r\n")
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// One kept-alive HTTP/1.1 connection, its bodies declared JSON; answers must carry a
/// Content-Length (muster's and etcd's do).
pub struct KeepAlive {
    addr: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl KeepAlive {
    /// Connects to `addr` (Nagle off, 10 s read timeout). None when nothing listens.
    pub fn open(addr: &str) -> Option<KeepAlive> {
        let s = TcpStream::connect(addr).ok()?;
        s.set_nodelay(true).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        Some(KeepAlive {
            addr: addr.into(),
            reader: BufReader::new(s.try_clone().ok()?),
            writer: s,
        })
    }

    /// Sends a request and returns (status, body), or None if the connection broke.
    pub fn call(&mut self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        let head = request_head(method, path, &self.addr, true, body.len(), false);
        self.writer.write_all(head.as_bytes()).ok()?;
        self.writer.write_all(body).ok()?;
        let mut line = String::new();
        self.reader.read_line(&mut line).ok()?;
        let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().ok()?;
                }
            }
        }
        let mut out = vec![0u8; len];
        self.reader.read_exact(&mut out).ok()?;
        Some((status, out))
    }
}
