//! A running `hookgate serve` for end-to-end tests, and the HTTP helpers that talk to it.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use hookgate::scheme::ElevenLabs;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use super::{now, scratch_dir};

/// The secret every end-to-end gateway is started with (through the environment).
pub const SECRET: &str = "e2e-secret";

/// A running `hookgate serve`, killed when dropped. Its standard error is collected line by
/// line ([`Gateway::logs`]).
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub dir: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts the gateway in a fresh working directory with `args` after `serve`.
    pub fn start(args: &[&str]) -> Self {
        let dir = scratch_dir();
        Self::start_in(&dir, args)
    }

    /// Starts the gateway in `dir` with `args` after `serve`.
    pub fn start_in(dir: &Path, args: &[&str]) -> Self {
        Self::try_start(Self::command(dir, args)).unwrap_or_else(|seen| {
            panic!("gateway did not start: {seen:#?}");
        })
    }

    /// The command [`Gateway::start_in`] runs, to adjust (environment, limits) before
    /// [`Gateway::try_start`].
    pub fn command(dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookgate"));
        command.arg("serve");
        // Ephemeral loopback ports unless the test names its own.
        for (flag, default) in [
            ("--listen", "127.0.0.1:0"),
            ("--admin-listen", "127.0.0.1:0"),
        ] {
            if !args.contains(&flag) {
                command.args([flag, default]);
            }
        }
        command
            .args(["--shutdown-grace", "5"])
            .args(args)
            .current_dir(dir)
            .env("ELEVENLABS_WEBHOOK_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .env_remove("HOOKGATE_SECRET_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `command` and waits for the gateway to announce its address; the lines it wrote
    /// if it exited first.
    pub fn try_start(mut command: Command) -> Result<Self, Vec<String>> {
        let dir = command
            .get_current_dir()
            .map(Path::to_owned)
            .unwrap_or_default();
        let mut child = command.spawn().expect("the hookgate binary starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut addr, mut admin) = (None, None);
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.split("admin: http://").nth(1) {
                admin = rest.split('/').next().and_then(|a| a.parse().ok());
            }
            if let Some(rest) = line.split("receiving deliveries at http").nth(1) {
                let rest = rest.trim_start_matches('s').trim_start_matches("://");
                addr = rest.split('/').next().and_then(|a| a.parse().ok());
                seen.push(line);
                break;
            }
            seen.push(line);
        }
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(seen);
        };
        let logs = Arc::new(Mutex::new(seen));
        // Keep draining stderr so the gateway never blocks on a full pipe.
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Ok(Self {
            child,
            addr,
            admin,
            dir,
            logs,
        })
    }

    /// Every line the gateway wrote to standard error so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits up to `within` for a log line containing every one of `parts`.
    pub fn wait_for_log(&self, parts: &[&str], within: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(line) = self
                .logs()
                .into_iter()
                .find(|line| parts.iter().all(|p| line.contains(p)))
            {
                return Some(line);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/webhooks/elevenlabs", self.addr)
    }

    pub fn events(&self) -> PathBuf {
        self.dir.join("events")
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A speech-to-text delivery body for `request_id`, stamped now.
pub fn transcript(request_id: &str) -> String {
    format!(
        r#"{{"type":"speech_to_text_transcription","event_timestamp":{},"data":{{"request_id":"{request_id}","transcription":{{"language_code":"en","language_probability":0.98,"text":"Hello world!","words":[]}}}}}}"#,
        now()
    )
}

/// A whole answer: status, headers and body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The problem code of a problem+json body, or `""`.
    pub fn code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// POSTs `body` to `url`, with `signature` as the `ElevenLabs-Signature` header.
pub async fn post(url: &str, signature: Option<String>, body: impl Into<Bytes>) -> Answer {
    let mut request = Request::post(url);
    if let Some(signature) = signature {
        request = request.header("elevenlabs-signature", signature);
    }
    exchange(request.body(Full::new(body.into())).unwrap()).await
}

/// Sends `request` on a fresh client and reads the whole answer.
pub async fn exchange(request: Request<Full<Bytes>>) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    Answer::read(client.request(request).await.unwrap()).await
}

impl Answer {
    /// Reads the whole of `response`.
    pub async fn read(response: http::Response<hyper::body::Incoming>) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Self {
            status,
            headers,
            body,
        }
    }
}

/// A signature header for `body` under [`SECRET`], stamped now.
pub fn sign(body: &[u8]) -> Option<String> {
    Some(ElevenLabs::new(SECRET).unwrap().sign(now(), body))
}
