//! The CLI's HTTP client for the local agent, and the one way every command reports a failed
//! request: a connection failure as it is, a refusal as `{what failed}: {the agent's answer}`,
//! both with exit code 1 (as Consul's CLI does).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::de::DeserializeOwned;

use crate::tls::api_client::ApiClientTls;

/// Where the agent's HTTP API is, and how to speak TLS to it (docs/security.md, The CLI):
/// Consul's flags, with its environment variables renamed `MUSTER_*`.
#[derive(Debug, Args, Clone)]
pub struct HttpArgs {
    /// Address of the agent's HTTP API: HOST:PORT or http://HOST:PORT, or https://HOST:PORT
    /// for its HTTPS API.
    #[arg(
        long = "http-addr",
        env = "MUSTER_HTTP_ADDR",
        default_value = "127.0.0.1:8500",
        value_name = "ADDR"
    )]
    pub http_addr: String,
    /// The CA the agent's HTTPS certificate must chain to (PEM).
    #[arg(long = "ca-file", env = "MUSTER_CACERT", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// A directory of CA certificates (*.pem, *.crt, *.cer), as ca_path.
    #[arg(long = "ca-path", env = "MUSTER_CAPATH", value_name = "DIR")]
    pub ca_path: Option<PathBuf>,
    /// The certificate to present to an agent with verify_incoming (PEM).
    #[arg(long = "client-cert", env = "MUSTER_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// The key of -client-cert (PEM).
    #[arg(long = "client-key", env = "MUSTER_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// The name to ask for (SNI) and to find in the agent's certificate; default the host of
    /// -http-addr.
    #[arg(
        long = "tls-server-name",
        env = "MUSTER_TLS_SERVER_NAME",
        value_name = "NAME"
    )]
    pub tls_server_name: Option<String>,
    /// The ACL token to send (docs/acl.md). Prefer -token-file or MUSTER_HTTP_TOKEN: a flag is
    /// visible to every local user in /proc.
    #[arg(
        long = "token",
        env = "MUSTER_HTTP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// A file whose first line is the ACL token to send.
    #[arg(
        long = "token-file",
        env = "MUSTER_HTTP_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub token_file: Option<PathBuf>,
}

/// A request for `https://` without it being in `-http-addr` (Consul's `CONSUL_HTTP_SSL`).
const HTTP_SSL_ENV: &str = "MUSTER_HTTP_SSL";
/// `false` skips the check of the agent's certificate (Consul's `CONSUL_HTTP_SSL_VERIFY`).
const HTTP_SSL_VERIFY_ENV: &str = "MUSTER_HTTP_SSL_VERIFY";

/// How long a whole request may take, in seconds (default [`DEFAULT_TIMEOUT`]).
const HTTP_TIMEOUT_ENV: &str = "MUSTER_HTTP_TIMEOUT";
/// Longer than the longest blocking wait a command asks for, so that a slow answer is not cut.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(65);
/// How long to wait for the connection itself.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The request timeout from [`HTTP_TIMEOUT_ENV`], or why its value is refused.
fn request_timeout() -> Result<Duration, String> {
    match std::env::var(HTTP_TIMEOUT_ENV) {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
            _ => Err(format!(
                "{HTTP_TIMEOUT_ENV}={v:?} is not a number of seconds: use e.g. 65"
            )),
        },
    }
}

/// What to do about a TLS failure, read from its description (rustls's error names).
fn tls_hint(error: &str) -> Option<&'static str> {
    let e = error.to_ascii_lowercase();
    if e.contains("certificaterequired") || e.contains("certificate required") {
        Some("the agent requires a client certificate (verify_incoming): give -client-cert and -client-key (MUSTER_CLIENT_CERT, MUSTER_CLIENT_KEY)")
    } else if e.contains("unknownissuer")
        || e.contains("unknown issuer")
        || e.contains("unknownca")
        || e.contains("unknown ca")
    {
        Some("the certificates do not chain to the same CA: -ca-file must be the CA that signed the agent's certificate, and the agent must trust the CA of -client-cert")
    } else if e.contains("notvalidforname") || e.contains("not valid for name") {
        Some("the agent's certificate does not name the host of -http-addr: dial a name it carries, or give that name with -tls-server-name")
    } else if e.contains("invalidcontenttype")
        || e.contains("corrupt message")
        || e.contains("invalid content type")
    {
        Some("the address does not speak TLS: use http:// for the plain HTTP API")
    } else {
        None
    }
}

/// Every address `host` resolves to (a literal address as it is), all of which are tried.
fn resolve(host: &str, port: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs;
    Ok((host, port).to_socket_addrs()?.collect())
}

/// A boolean environment variable as Go's `strconv.ParseBool` reads it (Consul's parser).
fn env_bool(name: &str) -> Result<Option<bool>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => match v.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Some(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Some(false)),
            other => Err(format!(
                "{name}={other:?} is not a boolean: use true or false"
            )),
        },
    }
}

impl HttpArgs {
    /// The client for these arguments. A TLS setting that cannot be used is kept as the
    /// client's error and reported by its first request (exit 1, one line naming the flag),
    /// so that every command reports it the way it reports an unreachable agent.
    pub fn client(&self) -> Client {
        let timeout = match request_timeout() {
            Ok(t) => t,
            Err(why) => {
                return Client {
                    base: self.http_addr.clone(),
                    timeout: DEFAULT_TIMEOUT,
                    http: Err(why),
                }
            }
        };
        match self.build(timeout) {
            Ok((base, http)) => Client {
                base,
                timeout,
                http: Ok(http),
            },
            Err(why) => Client {
                base: self.http_addr.clone(),
                timeout,
                http: Err(why),
            },
        }
    }

    fn build(&self, timeout: Duration) -> Result<(String, reqwest::Client), String> {
        let addr = self.http_addr.trim_end_matches('/');
        let https = addr.starts_with("https://")
            || (!addr.starts_with("http://") && env_bool(HTTP_SSL_ENV)?.unwrap_or(false));
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_string()
        } else if https {
            format!("https://{addr}")
        } else {
            format!("http://{addr}")
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = self.token()? {
            let mut value = reqwest::header::HeaderValue::from_str(&token).map_err(|_| {
                "the ACL token holds characters a header cannot carry (-token, -token-file)"
                    .to_string()
            })?;
            value.set_sensitive(true);
            headers.insert("x-consul-token", value);
        }
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT);
        let builder = if https {
            let tls = ApiClientTls {
                ca_file: self.ca_file.clone(),
                ca_path: self.ca_path.clone(),
                client_cert: self.client_cert.clone(),
                client_key: self.client_key.clone(),
                verify: env_bool(HTTP_SSL_VERIFY_ENV)?.unwrap_or(true),
            };
            let config = tls.client_config().map_err(|e| e.to_string())?;
            let builder = builder.use_preconfigured_tls(config);
            match &self.tls_server_name {
                None => builder,
                // The name to ask for and check is another than the host dialled: dial the
                // host's address under that name.
                Some(name) => {
                    let url = reqwest::Url::parse(&base)
                        .map_err(|e| format!("-http-addr {addr:?}: {e}"))?;
                    let host = url
                        .host_str()
                        .ok_or_else(|| format!("-http-addr {addr:?} names no host"))?;
                    let port = url.port_or_known_default().unwrap_or(443);
                    let dial = resolve(host.trim_matches(['[', ']']), port)
                        .map_err(|e| format!("-http-addr {addr:?}: cannot resolve {host}: {e}"))?;
                    if dial.is_empty() {
                        return Err(format!(
                            "-http-addr {addr:?}: {host} resolves to no address"
                        ));
                    }
                    // The Host header stays the address dialled (the agent's Host check
                    // knows it); only the TLS name changes.
                    let authority = match url.port() {
                        Some(p) => format!("{host}:{p}"),
                        None => host.to_string(),
                    };
                    headers.insert(
                        reqwest::header::HOST,
                        reqwest::header::HeaderValue::from_str(&authority)
                            .map_err(|e| format!("-http-addr {addr:?}: {e}"))?,
                    );
                    let mut url = url;
                    url.set_host(Some(name))
                        .map_err(|e| format!("-tls-server-name {name:?}: {e}"))?;
                    let rebased = url.as_str().trim_end_matches('/').to_string();
                    return builder
                        .resolve_to_addrs(name, &dial)
                        .default_headers(headers)
                        .build()
                        .map(|c| (rebased, c))
                        .map_err(|e| format!("cannot set up the HTTPS client: {e}"));
                }
            }
        } else {
            builder
        };
        let http = builder
            .default_headers(headers)
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok((base, http))
    }

    /// The ACL token: `-token` (or `MUSTER_HTTP_TOKEN`), or the first line of `-token-file`
    /// (or `MUSTER_HTTP_TOKEN_FILE`); both is an error, as is an unreadable or empty file.
    /// Errors name the flag and the file, never the token.
    fn token(&self) -> Result<Option<String>, String> {
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => Err(
                "give -token or -token-file (MUSTER_HTTP_TOKEN or MUSTER_HTTP_TOKEN_FILE), not both"
                    .into(),
            ),
            (Some(t), None) => Ok(Some(t.trim().to_string()).filter(|t| !t.is_empty())),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("-token-file: cannot read {}: {e}", f.display()))?;
                match text.lines().next().map(str::trim) {
                    Some(t) if !t.is_empty() => Ok(Some(t.to_string())),
                    _ => Err(format!(
                        "-token-file: {} is empty: put the token on its first line",
                        f.display()
                    )),
                }
            }
            (None, None) => Ok(None),
        }
    }
}

/// A response: status and body text.
pub struct Reply {
    pub status: reqwest::StatusCode,
    pub body: String,
}

/// Why a GET for JSON gave nothing to print.
#[derive(Debug)]
pub enum GetFailure {
    /// The agent could not be reached, or its answer not read; the text says so.
    Unreachable(String),
    /// The agent answered with an error status; `body` is its explanation.
    Refused {
        status: reqwest::StatusCode,
        body: String,
    },
    /// The answer is not the JSON the command expects.
    Unexpected(serde_json::Error),
}

impl GetFailure {
    /// Prints the failure, a refusal or bad answer as `{failed}: …`, and gives exit code 1.
    pub fn report(&self, failed: &str) -> u8 {
        match self {
            GetFailure::Unreachable(e) => eprintln!("{e}"),
            GetFailure::Refused { body, .. } => eprintln!("{failed}: {}", body.trim()),
            GetFailure::Unexpected(e) => eprintln!("{failed}: unexpected answer: {e}"),
        }
        1
    }
}

/// The reply of a request that must succeed; otherwise prints why (the connection failure, or
/// `{failed}: {the agent's answer}`) and gives exit code 1 as the error.
pub fn succeeded(reply: Result<Reply, String>, failed: &str) -> Result<Reply, u8> {
    match reply {
        Err(e) => {
            eprintln!("{e}");
            Err(1)
        }
        Ok(r) if r.status.is_success() => Ok(r),
        Ok(r) => {
            eprintln!("{failed}: {}", r.body.trim());
            Err(1)
        }
    }
}

pub struct Client {
    base: String,
    /// How long a request may take in all ([`HTTP_TIMEOUT_ENV`]), named when it ran out.
    timeout: Duration,
    /// The client, or why the flags give none (a TLS file that does not load, say).
    http: Result<reqwest::Client, String>,
}

impl Client {
    /// Why the agent could not be reached: the error with its causes, and what to do where
    /// the cause says (a TLS refusal names the flag that fixes it).
    ///
    /// Nothing listening and no answer in time are the common cases; each is one line that
    /// says which, and what to set (docs/configuration.md, "Other subcommands").
    fn unreachable(&self, e: &reqwest::Error) -> String {
        let mut text = e.to_string();
        let mut refused = false;
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            refused |= c
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
            cause = c.source();
        }
        let base = &self.base;
        if let Some(hint) = tls_hint(&text) {
            return format!("Error connecting to muster agent at {base}: {text}\n{hint}");
        }
        let fix =
            "set -http-addr or MUSTER_HTTP_ADDR to the address the agent's HTTP API listens on";
        if refused || text.contains("Connection refused") {
            format!("cannot reach the agent at {base} (connection refused); is it running? {fix} (cause: {text})")
        } else if e.is_connect() && e.is_timeout() {
            format!("cannot reach the agent at {base} (no connection within {} s); is the address right and reachable? {fix} (cause: {text})", CONNECT_TIMEOUT.as_secs())
        } else if e.is_timeout() {
            format!("the agent at {base} did not answer within {} s (timed out); is it overloaded, or is this another service's port? {HTTP_TIMEOUT_ENV} sets the limit in seconds (cause: {text})", self.timeout.as_secs())
        } else if e.is_connect() {
            format!("cannot reach the agent at {base}; is it running? {fix} (cause: {text})")
        } else {
            format!("Error connecting to muster agent at {base}: {text}")
        }
    }

    /// A request to `path` of the agent, or why there is no client to send it.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        let http = self.http.as_ref().map_err(Clone::clone)?;
        Ok(http.request(method, format!("{}{path}", self.base)))
    }

    async fn send(&self, req: Result<reqwest::RequestBuilder, String>) -> Result<Reply, String> {
        let resp = req?.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("Error reading the agent's answer: {e}"))?;
        Ok(Reply { status, body })
    }

    pub async fn get(&self, path: &str) -> Result<Reply, String> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// GET `path` and read its JSON answer as `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, GetFailure> {
        let reply = self.get(path).await.map_err(GetFailure::Unreachable)?;
        if !reply.status.is_success() {
            return Err(GetFailure::Refused {
                status: reply.status,
                body: reply.body,
            });
        }
        serde_json::from_str(&reply.body).map_err(GetFailure::Unexpected)
    }

    /// A request of any method with a body (`muster keyring` sends its key in one).
    pub async fn with_body(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        self.send(self.request(method, path).map(|r| r.body(body)))
            .await
    }

    pub async fn put_body(&self, path: &str, body: Vec<u8>) -> Result<Reply, String> {
        self.send(
            self.request(reqwest::Method::PUT, path)
                .map(|r| r.body(body)),
        )
        .await
    }

    /// A GET whose body is bytes, not text (snapshots).
    pub async fn get_bytes(&self, path: &str) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
        let resp = self
            .request(reqwest::Method::GET, path)?
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("Error reading the agent's answer: {e}"))?;
        Ok((status, body.to_vec()))
    }

    pub async fn delete(&self, path: &str) -> Result<Reply, String> {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn put(&self, path: &str) -> Result<Reply, String> {
        self.send(self.request(reqwest::Method::PUT, path)).await
    }

    /// A GET whose answer streams for as long as the agent sends it (`muster monitor`): each
    /// chunk to `out` as it comes, without the 65 s deadline of the other requests. `Err`
    /// holds the refusal's status and text, or why the agent could not be reached.
    pub async fn stream(
        &self,
        path: &str,
        mut out: impl FnMut(&[u8]),
    ) -> Result<(), (Option<reqwest::StatusCode>, String)> {
        // A year: "no deadline" for a monitor left running.
        let forever = Duration::from_secs(365 * 24 * 3600);
        let mut resp = self
            .request(reqwest::Method::GET, path)
            .map_err(|e| (None, e))?
            .timeout(forever)
            .send()
            .await
            .map_err(|e| (None, self.unreachable(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err((Some(status), body));
        }
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => out(&c),
                Ok(None) => return Ok(()),
                Err(e) => return Err((None, format!("the agent's stream broke off: {e}"))),
            }
        }
    }
}

/// Runs one CLI command on a small runtime.
pub fn block_on(fut: impl std::future::Future<Output = u8>) -> u8 {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            2
        }
    }
}

/// Percent-encodes one path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
