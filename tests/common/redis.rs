//! Redis servers for the tests of the Redis stores (feature `redis`).
//!
//! - [`RedisServer::start`] spawns `redis-server` on a free loopback port, with no persistence
//!   and a scratch directory of its own, waits until it answers `PING`, and kills it when
//!   dropped. [`RedisServer::stop`] and [`RedisServer::restart`] (same port) make outages.
//! - [`redis_for`] is for tests that just need *a* server: `HOOKGATE_TEST_REDIS_URL` if set
//!   (e.g. a Valkey or a managed Redis; each call gets a key prefix of its own), else a spawned
//!   `redis-server`.
//!
//! **When neither is possible** (no `redis-server` on `PATH` and `HOOKGATE_TEST_REDIS_URL`
//! unset), a test **panics if the `CI` environment variable is set** (CI must run them), and
//! otherwise prints `skipped: <test>: no redis-server on PATH and HOOKGATE_TEST_REDIS_URL
//! unset` and returns without asserting anything: [`redis_for`] and [`RedisServer::for_test`]
//! answer `None`.
//!
//! This file is also compiled into `benches/stores.rs` (`#[path]`): it depends on nothing else
//! in `tests/common`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

/// The environment variable naming an external server for the tests.
pub const URL_VAR: &str = "HOOKGATE_TEST_REDIS_URL";

/// How long a spawned server may take to answer `PING`.
const STARTUP: Duration = Duration::from_secs(10);

/// A `redis-server` process of a test's own, killed when dropped.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Spawns `redis-server` on a free loopback port and waits until it answers `PING`.
    /// `None` if there is no `redis-server` on `PATH`.
    pub fn start() -> Option<Self> {
        if !on_path("redis-server") {
            return None;
        }
        let dir = scratch_dir();
        // A port taken between finding it free and the server binding it: try another.
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                dir: dir.clone(),
                child: None,
            };
            if server.spawn() {
                return Some(server);
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// [`start`](RedisServer::start) for the test `test`: `None` after printing the skip
    /// message, or a panic under CI, when no server can be spawned.
    pub fn for_test(test: &str) -> Option<Self> {
        let server = Self::start();
        if server.is_none() {
            skip(test, "no redis-server on PATH");
        }
        server
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The loopback address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server (its data is gone: it persists nothing) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, on the same port, and waits until it answers `PING`.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + STARTUP;
        // The port may linger a moment after the kill.
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one command (inline form, no spaces in arguments) and reads the first line of
    /// the answer, e.g. `+PONG` or `:1500`.
    pub fn command(&self, command: &str) -> String {
        command_at(self.addr(), command).expect("redis-server answers")
    }

    /// Spawns the process and waits for `PING`: false if it exited (port taken) or never
    /// answered.
    fn spawn(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if command_at(self.addr(), "PING").as_deref() == Some("+PONG") {
                self.child = Some(child);
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server for a test that just needs one, and the key prefix to use on it.
pub struct TestRedis {
    /// The server's URL.
    pub url: String,
    /// A key prefix of this test's own (on a shared external server, keys never collide).
    pub prefix: String,
    /// The spawned server, if there is no external one; stopped when this is dropped.
    pub server: Option<RedisServer>,
}

/// A server for the test `test`: `HOOKGATE_TEST_REDIS_URL` if set, else a spawned
/// `redis-server`; `None` after printing the skip message (or a panic under CI) if neither.
pub fn redis_for(test: &str) -> Option<TestRedis> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let prefix = format!(
        "hookgate-test:{test}:{}:{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    if let Ok(url) = std::env::var(URL_VAR) {
        if !url.is_empty() {
            return Some(TestRedis {
                url,
                prefix,
                server: None,
            });
        }
    }
    let server = RedisServer::start();
    if server.is_none() {
        skip(
            test,
            &format!("no redis-server on PATH and {URL_VAR} unset"),
        );
    }
    server.map(|server| TestRedis {
        url: server.url(),
        prefix,
        server: Some(server),
    })
}

/// Prints the skip message, or panics under CI.
fn skip(test: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {why}, and CI is set: Redis tests must run in CI"
    );
    println!("skipped: {test}: {why}");
}

/// One command over a fresh connection; `None` if the server is not there or does not answer.
fn command_at(addr: SocketAddr, command: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut answer = Vec::new();
    let mut byte = [0_u8; 1];
    while !answer.ends_with(b"\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        answer.push(byte[0]);
    }
    answer.truncate(answer.len() - 2);
    String::from_utf8(answer).ok()
}

/// Whether `program` is an executable file in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// An empty directory of its own for a server's files.
fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = option_env!("CARGO_TARGET_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!(
        "hookgate-redis-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create the server's directory");
    dir
}
