//! The CLI's HTTP client for the local agent, and the one way every command reports a failed
//! request: a connection failure as it is, a refusal as `{what failed}: {the agent's answer}`,
//! both with exit code 1 (as Consul's CLI does).

use std::time::Duration;

use clap::Args;
use serde::de::DeserializeOwned;

/// Where the agent's HTTP API is.
#[derive(Debug, Args, Clone)]
pub struct HttpArgs {
    /// Address of the agent's HTTP API.
    #[arg(
        long = "http-addr",
        env = "MUSTER_HTTP_ADDR",
        default_value = "127.0.0.1:8500",
        value_name = "ADDR"
    )]
    pub http_addr: String,
}

impl HttpArgs {
    pub fn client(&self) -> Client {
        let base =
            if self.http_addr.starts_with("http://") || self.http_addr.starts_with("https://") {
                self.http_addr.trim_end_matches('/').to_string()
            } else {
                format!("http://{}", self.http_addr.trim_end_matches('/'))
            };
        Client {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(65))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("a plain HTTP client builds"),
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
    http: reqwest::Client,
}

impl Client {
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Reply, String> {
        let resp = req
            .send()
            .await
            .map_err(|e| format!("Error connecting to muster agent at {}: {e}", self.base))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("Error reading the agent's answer: {e}"))?;
        Ok(Reply { status, body })
    }

    pub async fn get(&self, path: &str) -> Result<Reply, String> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
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
        self.send(
            self.http
                .request(method, format!("{}{path}", self.base))
                .body(body),
        )
        .await
    }

    pub async fn put_body(&self, path: &str, body: Vec<u8>) -> Result<Reply, String> {
        self.send(self.http.put(format!("{}{path}", self.base)).body(body))
            .await
    }

    /// A GET whose body is bytes, not text (snapshots).
    pub async fn get_bytes(&self, path: &str) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| format!("Error connecting to muster agent at {}: {e}", self.base))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("Error reading the agent's answer: {e}"))?;
        Ok((status, body.to_vec()))
    }

    pub async fn delete(&self, path: &str) -> Result<Reply, String> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    pub async fn put(&self, path: &str) -> Result<Reply, String> {
        self.send(self.http.put(format!("{}{path}", self.base)))
            .await
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
