//! A running gateway for end-to-end tests, and the HTTP helpers that talk to it.
//!
//! Gateway behaviour is tested on a gateway started in the test process through the library
//! ([`Gateway::start`]: `hookgate::gateway`, real sockets on loopback port 0); what belongs to
//! the binary (flags, `.env`, signals, exit codes, logs, process limits) on `hookgate serve`
//! itself ([`Gateway::spawn`]), which reports the addresses it got in its `--ready-file`.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use hookgate::{
    gateway::{Gateway as Library, GatewayBuilder, GatewayHandle},
    scheme::ElevenLabs,
};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use super::{now, scratch_dir};

/// The secret every end-to-end gateway is started with (through the environment, for the
/// binary).
pub const SECRET: &str = "e2e-secret";

/// How long a spawned `hookgate serve` may take to be ready.
const STARTUP: Duration = Duration::from_secs(60);

/// A running gateway: in this process ([`Gateway::start`]), stopped when dropped, or a
/// `hookgate serve` process ([`Gateway::spawn`]), killed when dropped, whose standard error is
/// collected line by line ([`Gateway::logs`]).
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The working directory; the sink directory is `events` in it.
    pub dir: PathBuf,
    url: String,
    kind: Kind,
}

enum Kind {
    InProcess(Option<GatewayHandle>),
    Process {
        child: Child,
        logs: Arc<Mutex<Vec<String>>>,
    },
}

/// What `hookgate serve --ready-file` writes.
#[derive(serde::Deserialize)]
struct Ready {
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    url: String,
}

impl Gateway {
    /// Starts a gateway in this process, with a fresh directory, on loopback port 0 (an admin
    /// listener too), checking [`SECRET`], with a 5 s shutdown grace and `settings` applied.
    pub async fn start(settings: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> Self {
        Self::start_in(&scratch_dir(), settings).await
    }

    /// [`Gateway::start`], the sink directory `events` in `dir`.
    pub async fn start_in(
        dir: &Path,
        settings: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
    ) -> Self {
        let builder = Library::builder(ElevenLabs::new(SECRET).unwrap())
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .admin_listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .shutdown_grace(Duration::from_secs(5))
            .sink_dir(dir.join("events"));
        let handle = settings(builder)
            .build()
            .unwrap_or_else(|error| panic!("gateway settings refused: {error}"))
            .serve()
            .await
            .unwrap_or_else(|error| panic!("gateway did not start: {error}"));
        Self {
            addr: handle.local_addr(),
            admin: handle.admin_addr(),
            dir: dir.to_owned(),
            url: handle.url(),
            kind: Kind::InProcess(Some(handle)),
        }
    }

    /// Stops an in-process gateway gracefully; returns once it has stopped.
    pub async fn shutdown(mut self) {
        match &mut self.kind {
            Kind::InProcess(handle) => handle.take().unwrap().shutdown().await,
            Kind::Process { .. } => panic!("shutdown() is for in-process gateways"),
        }
    }

    /// Spawns `hookgate serve` in a fresh working directory with `args` after `serve`.
    pub fn spawn(args: &[&str]) -> Self {
        let dir = scratch_dir();
        Self::spawn_in(&dir, args)
    }

    /// Spawns `hookgate serve` in `dir` with `args` after `serve`.
    pub fn spawn_in(dir: &Path, args: &[&str]) -> Self {
        Self::try_spawn(Self::command(dir, args)).unwrap_or_else(|seen| {
            panic!("gateway did not start: {seen:#?}");
        })
    }

    /// The command [`Gateway::spawn_in`] runs, to adjust (environment, limits) before
    /// [`Gateway::try_spawn`]. It asks for a `--ready-file` of its own.
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
            .arg("--ready-file")
            .arg(scratch_dir().join("ready.json"))
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

    /// Runs `command` and waits until the gateway has written its ready file; the lines it
    /// wrote if it exited (or took too long) first.
    pub fn try_spawn(mut command: Command) -> Result<Self, Vec<String>> {
        let dir = command
            .get_current_dir()
            .map(Path::to_owned)
            .unwrap_or_default();
        let ready_file = command
            .get_args()
            .skip_while(|arg| *arg != "--ready-file")
            .nth(1)
            .map(PathBuf::from)
            .expect("the command names a --ready-file");
        let mut child = command.spawn().expect("the hookgate binary starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        // Keep draining stderr so the gateway never blocks on a full pipe.
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let started = Instant::now();
        let ready = loop {
            if let Ok(text) = std::fs::read_to_string(&ready_file) {
                break serde_json::from_str::<Ready>(&text).expect("the ready file is JSON");
            }
            let exited = child.try_wait().unwrap().is_some();
            if exited || started.elapsed() > STARTUP {
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                return Err(logs.lock().unwrap().clone());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The addresses come from the ready file; the logs written before it (which tests read
        // at once) are in the pipe up to the announcement of its URL.
        let caught_up = Instant::now();
        while !logs
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(&ready.url))
            && caught_up.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Self {
            addr: ready.listen,
            admin: ready.admin,
            dir,
            url: ready.url,
            kind: Kind::Process { child, logs },
        })
    }

    /// Every line a spawned gateway wrote to standard error so far.
    pub fn logs(&self) -> Vec<String> {
        match &self.kind {
            Kind::Process { logs, .. } => logs.lock().unwrap().clone(),
            Kind::InProcess(_) => panic!("logs are collected from spawned gateways only"),
        }
    }

    /// Waits up to `within` for a log line containing every one of `parts`.
    pub fn wait_for_log(&self, parts: &[&str], within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self
                .logs()
                .into_iter()
                .find(|line| parts.iter().all(|p| line.contains(p)))
            {
                return Some(line);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn events(&self) -> PathBuf {
        self.dir.join("events")
    }

    /// How many event files the sink directory holds (its own hidden entries, the journal and
    /// temp files, aside).
    pub fn event_files(&self) -> usize {
        std::fs::read_dir(self.events())
            .unwrap()
            .filter(|entry| {
                !entry
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
    }

    /// The spawned gateway's process.
    pub fn child(&mut self) -> &mut Child {
        match &mut self.kind {
            Kind::Process { child, .. } => child,
            Kind::InProcess(_) => panic!("an in-process gateway has no child process"),
        }
    }

    pub fn signal(&mut self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child().id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Kind::Process { child, .. } = &mut self.kind {
            let _ = child.kill();
            let _ = child.wait();
        }
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
