//! The embedded default destination: each verified delivery is stored durably in a directory
//! *before* it is acknowledged, named by its event id, holding exactly the bytes received.
//!
//! One event is a temp file (written, fsynced), hard-linked to its final name (atomic, and never
//! replacing an event already stored), then the directory is fsynced so the name survives a
//! crash. A name already holding other bytes (two events of one call share a
//! `conversation_id`) sends the event to `<id>.<sha-256 of the body>.json`; a redelivery, byte
//! for byte the same, finds its own copy and stores nothing. Directory fsyncs are shared (group commit): every request waiting when a directory
//! fsync starts is covered by it, and file fsyncs run in parallel on the blocking pool, so the
//! filesystem can merge their journal commits.
//!
//! Transcripts are private: event files are `0600` and a directory the sink creates is `0700`,
//! whatever the umask. Whatever else sits at an event's name (a symlink, a directory, a FIFO, a
//! device) is never followed, opened or waited on: it counts as "other bytes". Every store,
//! and the `/healthz` probe of the directory, is bounded in time.

use super::codes;
use std::{
    convert::Infallible,
    fs,
    future::Future,
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tower_service::Service;

use super::{metrics::HealthCheck, Error};
use crate::{
    body::{ProblemBody, ResponseBody},
    elevenlabs::event_key,
    problem::Problem,
    signature::VerifiedBody,
};

/// Temp files start with this; leftovers of a crash are removed at start.
const TEMP_PREFIX: &str = ".tmp-";

/// Event files: the owner alone reads them (transcripts are personal data).
const FILE_MODE: u32 = 0o600;
/// A sink directory the sink creates.
const DIR_MODE: u32 = 0o700;

/// How long storing one event may take: a hung filesystem answers the sender a retryable 503
/// instead of holding its request forever. The blocked thread is left to finish; should it
/// store the event after all, the sender's retry finds it there.
pub(crate) const STORE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the `/healthz` probe of the directory may take, waiting for an earlier one included.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

// `open(2)` flags std has no name for: never follow a symlink at an event's name, never wait
// for a FIFO's writer.
const O_NOFOLLOW: i32 = libc::O_NOFOLLOW;
const O_NONBLOCK: i32 = libc::O_NONBLOCK;

/// What storing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) file: String,
    pub(crate) duplicate: bool,
}

/// The durable sink: a directory that every verified delivery is stored in *before* it is
/// answered, as a tower service behind [`VerifySignatureLayer`](crate::VerifySignatureLayer).
///
/// Each call stores the request's exact bytes as `<event key>.json`, named by
/// [`event_key`](crate::elevenlabs::event_key): `<request_id>.json` for a transcription,
/// `<conversation_id>.<type>.json` for a call's events (`c1.post_call_transcription.json`,
/// `c1.post_call_audio.json`), `body-<body digest>.json` for an event with no id; an event
/// whose name holds other bytes goes to `<key>.<body digest>.json`. Storing is durable: temp file, fsync, hard link to the name (never
/// replacing, never following a symlink), then a directory fsync shared by the deliveries
/// waiting for one. Files are `0600`, whatever the umask. The call answers `200` with
/// `{"stored": "<file>", "duplicate": <bool>}`, or, when the event could not be stored within
/// 10 s (disk full, directory gone, hung filesystem), a retryable `503 sink_unavailable`
/// problem with `Retry-After`: never a `4xx`. A redelivery of an event already stored answers
/// `200` and stores nothing.
///
/// Clones share the directory and its directory-fsync committer.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use hookgate::{gateway::Sink, scheme::ElevenLabs, VerifySignatureLayer};
/// use tower::ServiceBuilder;
///
/// let scheme = ElevenLabs::new(std::env::var("ELEVENLABS_WEBHOOK_SECRET")?)?;
/// let service = ServiceBuilder::new()
///     .layer(VerifySignatureLayer::new(scheme))
///     .service(Sink::open("./events")?);
/// # let _ = service;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    dir_sync: mpsc::UnboundedSender<oneshot::Sender<Result<(), Arc<io::Error>>>>,
    /// The bound on one store.
    timeout: Duration,
    /// Held by the running `/healthz` probe: probes take turns, so a hung filesystem pins one
    /// blocking thread, not one per poll.
    probe: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl Sink {
    /// Opens the directory (creating it, `0700`, when it is not there), removes the temp files
    /// a crash left in it, checks that it can be synced and starts its directory-fsync
    /// committer on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::SinkDirectory`] when the directory cannot be created, read, cleaned or synced.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        Self::open_bounded(dir, STORE_TIMEOUT).map_err(|source| Error::SinkDirectory {
            dir: dir.to_owned(),
            source,
        })
    }

    fn open_bounded(dir: &Path, timeout: Duration) -> io::Result<Self> {
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)?;
            // Exactly 0700, whatever the umask took away.
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
            // The new directory's own name must survive a crash too.
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
            fs::File::open(parent.unwrap_or(Path::new(".")))?.sync_all()?;
        }
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                && !entry.file_type()?.is_dir()
            {
                fs::remove_file(entry.path())?;
            }
        }
        // Fail now, not on the first delivery, if the directory cannot be synced.
        sync_dir(dir)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(commit_directory(dir.to_owned(), rx));
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            dir_sync: tx,
            timeout,
            probe: Arc::default(),
        });
        Ok(Self { shared })
    }

    /// What `/healthz` asks of the sink: can an event be written now?
    pub(crate) fn health_check(&self) -> Arc<dyn HealthCheck> {
        self.shared.clone()
    }

    /// Stores one event durably; returns once its file and name survive a crash, or with an
    /// error once the bound on a store has passed.
    pub(crate) async fn store(&self, body: VerifiedBody) -> io::Result<Stored> {
        bounded(
            self.shared.timeout,
            "storing the event",
            self.store_durably(body),
        )
        .await
    }

    async fn store_durably(&self, body: VerifiedBody) -> io::Result<Stored> {
        let dir = self.shared.dir.clone();
        let stored = tokio::task::spawn_blocking(move || write_event(&dir, &body))
            .await
            .map_err(io::Error::other)??;
        // The new name (or the name another request is still syncing) must be durable too.
        let (tx, rx) = oneshot::channel();
        self.shared
            .dir_sync
            .send(tx)
            .map_err(|_| io::Error::other("sink committer stopped"))?;
        match rx.await {
            Ok(Ok(())) => Ok(stored),
            Ok(Err(error)) => Err(io::Error::new(error.kind(), error.to_string())),
            Err(_) => Err(io::Error::other("sink committer stopped")),
        }
    }
}

/// `future`, or a `TimedOut` error once `limit` has passed.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} took over {} ms", limit.as_millis()),
            ))
        })
}

/// `/healthz` asks whether an event can be written now: a temp file is created, written and
/// removed in the directory (no fsync: cheap enough to poll), bounded in time.
impl HealthCheck for Shared {
    fn check(self: Arc<Self>) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        Box::pin(async move {
            let dir = self.dir.clone();
            let turn = self.probe.clone();
            let probe = async move {
                let turn = turn.lock_owned().await;
                tokio::task::spawn_blocking(move || {
                    let _turn = turn;
                    probe(&dir)
                })
                .await
                .map_err(io::Error::other)?
            };
            bounded(PROBE_TIMEOUT, "probing the directory", probe)
                .await
                .map_err(|error| {
                    format!(
                        "sink directory {} cannot be written: {error}",
                        self.dir.display()
                    )
                })
        })
    }
}

/// Creates, writes and removes a temp file in `dir`, as a store would.
fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(format!("{TEMP_PREFIX}probe-{}", fastrand::u64(..)));
    let written = create_private(&path).and_then(|mut file| file.write_all(b"probe\n"));
    let removed = fs::remove_file(&path);
    written.and(removed)
}

/// Group commit of the directory: each round fsyncs it once for every request queued.
async fn commit_directory(
    dir: PathBuf,
    mut requests: mpsc::UnboundedReceiver<oneshot::Sender<Result<(), Arc<io::Error>>>>,
) {
    while let Some(first) = requests.recv().await {
        let mut waiting = vec![first];
        while let Ok(more) = requests.try_recv() {
            waiting.push(more);
        }
        let dir = dir.clone();
        let result = tokio::task::spawn_blocking(move || sync_dir(&dir))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
            .map_err(Arc::new);
        for waiter in waiting {
            let _ = waiter.send(result.clone());
        }
    }
}

/// Fsyncs the directory; never waits for a writer should a FIFO have taken its place.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(dir)?
        .sync_all()
}

/// Creates `path` (never there before, never through a symlink) as a file of mode exactly
/// `0600`, open for writing.
fn create_private(path: &Path) -> io::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(O_NOFOLLOW)
        .open(path)?;
    // The umask can only take bits away; this puts back any it took.
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// The file name of an event: its id when the id is a safe file name, otherwise a digest of
/// the id (so redeliveries still meet), or of the body when there is no id.
pub(crate) fn file_name(body: &[u8], id: Option<&str>) -> String {
    match id {
        Some(id)
            if id.len() <= 128
                && !id.starts_with('.')
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            format!("{id}.json")
        }
        Some(id) => format!("id-{}.json", hex::encode(Sha256::digest(id.as_bytes()))),
        None => format!("body-{}.json", hex::encode(Sha256::digest(body))),
    }
}

fn write_event(dir: &Path, body: &VerifiedBody) -> io::Result<Stored> {
    let bytes = body.to_bytes();
    let name = file_name(&bytes, event_key(&bytes).as_deref());
    // A name already holding other bytes (two events claiming one id), or anything but a
    // regular file, sends the event to a name that adds its digest. A redelivery is byte-identical (the
    // signature is in a header), so it meets its own copy under one of the two names.
    let stem = name.trim_end_matches(".json");
    let digested = format!("{stem}.{}.json", hex::encode(Sha256::digest(&bytes)));
    for name in [name.clone(), digested] {
        if let Some(duplicate) = store_as(dir, &name, body, &bytes)? {
            return Ok(Stored {
                file: name,
                duplicate,
            });
        }
    }
    // Both names are taken: by a SHA-256 collision, or by something put there on purpose.
    Err(io::Error::other(format!(
        "{name} and its digest-named twin are both taken by other content"
    )))
}

/// What an event's name holds.
#[derive(Debug, PartialEq, Eq)]
enum Occupant {
    Nothing,
    /// A regular file holding exactly the event's bytes.
    Same,
    /// Other bytes, or not a regular file at all (symlink, directory, FIFO, device, socket).
    Other,
}

/// What `path` holds compared with `bytes`, found without following a symlink, opening
/// anything but a regular file, waiting on a FIFO or reading more than `bytes.len() + 1` bytes.
fn occupant(path: &Path, bytes: &[u8]) -> io::Result<Occupant> {
    let seen = match fs::symlink_metadata(path) {
        Ok(seen) => seen,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Occupant::Nothing),
        Err(e) => return Err(e),
    };
    if !seen.file_type().is_file() || seen.len() != bytes.len() as u64 {
        return Ok(Occupant::Other);
    }
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Occupant::Nothing),
        // Swapped since for a symlink (ELOOP) or something else that cannot be opened.
        Err(e) => {
            return match fs::symlink_metadata(path) {
                Ok(now) if !now.file_type().is_file() => Ok(Occupant::Other),
                _ => Err(e),
            }
        }
    };
    // Only the very regular file looked at counts, not one swapped in since.
    let opened = file.metadata()?;
    if !opened.file_type().is_file() || (opened.dev(), opened.ino()) != (seen.dev(), seen.ino()) {
        return Ok(Occupant::Other);
    }
    let mut held = Vec::with_capacity(bytes.len() + 1);
    file.take(bytes.len() as u64 + 1).read_to_end(&mut held)?;
    Ok(if held == bytes {
        Occupant::Same
    } else {
        Occupant::Other
    })
}

/// Stores the event as `name` unless that name is taken: `Some(false)` stored now, `Some(true)`
/// already there with these very bytes, `None` taken by anything else.
fn store_as(dir: &Path, name: &str, body: &VerifiedBody, bytes: &[u8]) -> io::Result<Option<bool>> {
    let target = dir.join(name);
    let taken = |held| match held {
        Occupant::Same => Ok(Some(true)),
        Occupant::Other => Ok(None),
        Occupant::Nothing => Err(io::Error::other(format!(
            "{name} was removed while the event was being stored"
        ))),
    };
    match occupant(&target, bytes)? {
        Occupant::Nothing => {}
        held => return taken(held),
    }
    let temp = dir.join(format!("{TEMP_PREFIX}{}-{name}", fastrand::u64(..)));
    let result = (|| {
        let mut file = create_private(&temp)?;
        for frame in body.frames() {
            file.write_all(frame)?;
        }
        file.sync_all()?;
        // A hard link never replaces, nor follows a symlink at the name: the first copy of an
        // event wins, atomically.
        match fs::hard_link(&temp, &target) {
            Ok(()) => Ok(Some(false)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => taken(occupant(&target, bytes)?),
            Err(e) => Err(e),
        }
    })();
    let _ = fs::remove_file(&temp);
    result
}

impl Service<Request<VerifiedBody>> for Sink {
    type Response = Response<SinkBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<VerifiedBody>) -> Self::Future {
        let sink = self.clone();
        Box::pin(async move {
            match sink.store(request.into_body()).await {
                Ok(stored) => {
                    tracing::info!(file = %stored.file, duplicate = stored.duplicate, "event stored");
                    let body =
                        serde_json::json!({"stored": stored.file, "duplicate": stored.duplicate});
                    let mut response = Response::new(SinkBody::new(ResponseBody::new(Full::new(
                        Bytes::from(body.to_string()),
                    ))));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    Ok(response)
                }
                Err(error) => {
                    // Our own trouble (disk full, permissions): retryable, never a 4xx.
                    tracing::error!(%error, "event could not be stored");
                    Ok(
                        Problem::new(StatusCode::SERVICE_UNAVAILABLE, codes::SINK_UNAVAILABLE)
                            .with_detail("the event could not be stored; retry later")
                            .with_retry_after(std::time::Duration::from_secs(30))
                            .into_response()
                            .map(SinkBody::new),
                    )
                }
            }
        })
    }
}

pin_project! {
    /// The answer body of the [`Sink`]: where the event was stored, or a problem+json body
    /// saying why it could not be. One frame of an exact size.
    pub struct SinkBody {
        #[pin]
        inner: ResponseBody<Full<Bytes>>,
    }
}

impl SinkBody {
    fn new(inner: ResponseBody<Full<Bytes>>) -> Self {
        Self { inner }
    }
}

/// So that hookgate's layers in front of a [`Sink`] answer with the same body type.
impl ProblemBody for SinkBody {
    fn from_problem(bytes: Bytes) -> Self {
        Self::new(ResponseBody::from_problem(bytes))
    }
}

impl Body for SinkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl std::fmt::Debug for SinkBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkBody")
            .field("len", &self.inner.size_hint().exact())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::ProblemCode;

    #[test]
    fn safe_ids_name_files_and_unsafe_ones_are_digested() {
        assert_eq!(file_name(b"", Some("req_123")), "req_123.json");
        let evil = file_name(b"", Some("../../etc/passwd"));
        assert!(evil.starts_with("id-") && !evil.contains('/'), "{evil}");
        assert_eq!(evil, file_name(b"other body", Some("../../etc/passwd")));
        assert!(file_name(b"", Some(".hidden")).starts_with("id-"));
        assert!(file_name(b"x", None).starts_with("body-"));
        assert_ne!(file_name(b"x", None), file_name(b"y", None));
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hookgate-sink-{name}-{}", fastrand::u64(..)));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn stores_exact_bytes_once_and_cleans_crash_leftovers() {
        let dir = temp_dir("once");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".tmp-crashed"), b"partial").unwrap();
        let sink = Sink::open(&dir).unwrap();
        assert!(!dir.join(".tmp-crashed").exists());

        let body = br#"{"data":{"request_id":"r1"},"bytes":"\u00ff"}"#;
        let first = sink
            .store(VerifiedBody::from_bytes(&body[..]))
            .await
            .unwrap();
        assert_eq!(
            first,
            Stored {
                file: "r1.json".into(),
                duplicate: false
            }
        );
        let again = sink
            .store(VerifiedBody::from_bytes(&body[..]))
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(fs::read(dir.join("r1.json")).unwrap(), body);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "one file, no temp left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_calls_transcript_and_audio_are_named_by_conversation_and_type() {
        let dir = temp_dir("shared-id");
        let sink = Sink::open(&dir).unwrap();
        let transcript = br#"{"type":"post_call_transcription","data":{"conversation_id":"c1"}}"#;
        let audio = br#"{"type":"post_call_audio","data":{"conversation_id":"c1"}}"#;
        let store = |body: &'static [u8]| sink.store(VerifiedBody::from_bytes(body));

        let first = store(transcript).await.unwrap();
        assert_eq!(
            (first.file.as_str(), first.duplicate),
            ("c1.post_call_transcription.json", false)
        );
        let second = store(audio).await.unwrap();
        assert_eq!(
            (second.file.as_str(), second.duplicate),
            ("c1.post_call_audio.json", false),
            "another event, not a redelivery, and no digest-named twin"
        );
        // Redeliveries of either meet their own copy.
        assert_eq!(
            store(transcript).await.unwrap(),
            first.clone().redelivered()
        );
        assert_eq!(store(audio).await.unwrap(), second.clone().redelivered());

        assert_eq!(fs::read(dir.join(&first.file)).unwrap(), transcript);
        assert_eq!(fs::read(dir.join(&second.file)).unwrap(), audio);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn different_events_claiming_one_name_are_both_stored() {
        let dir = temp_dir("one-name");
        let sink = Sink::open(&dir).unwrap();
        let one = br#"{"type":"t","data":{"request_id":"r1","n":1}}"#;
        let other = br#"{"type":"t","data":{"request_id":"r1","n":2}}"#;
        let store = |body: &'static [u8]| sink.store(VerifiedBody::from_bytes(body));

        let first = store(one).await.unwrap();
        assert_eq!(first.file, "r1.json");
        let second = store(other).await.unwrap();
        assert!(!second.duplicate);
        assert!(second.file.starts_with("r1.") && second.file != "r1.json");
        assert_eq!(store(other).await.unwrap(), second.clone().redelivered());
        assert_eq!(fs::read(dir.join(&second.file)).unwrap(), other);
        fs::remove_dir_all(&dir).unwrap();
    }

    impl Stored {
        fn redelivered(self) -> Self {
            Self {
                duplicate: true,
                ..self
            }
        }
    }

    #[tokio::test]
    async fn concurrent_copies_of_one_event_leave_one_file() {
        let dir = temp_dir("concurrent");
        let sink = Sink::open(&dir).unwrap();
        let body =
            Bytes::from_static(br#"{"type":"post_call_audio","data":{"conversation_id":"c9"}}"#);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let sink = sink.clone();
                let body = body.clone();
                tokio::spawn(
                    async move { sink.store(VerifiedBody::from_bytes(body)).await.unwrap() },
                )
            })
            .collect();
        let mut fresh = 0;
        for task in tasks {
            if !task.await.unwrap().duplicate {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1, "exactly one copy wins");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        assert_eq!(fs::read(dir.join("c9.post_call_audio.json")).unwrap(), body);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn event_files_and_a_created_directory_are_private() {
        let parent = temp_dir("private");
        let dir = parent.join("events");
        let sink = Sink::open(&dir).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o700);
        let stored = sink
            .store(VerifiedBody::from_bytes(
                &br#"{"data":{"request_id":"p1"}}"#[..],
            ))
            .await
            .unwrap();
        assert_eq!(mode(&dir.join(&stored.file)), 0o600);
        fs::remove_dir_all(&parent).unwrap();
    }

    /// Everything but a regular file at an event's name, and a regular file reached through a
    /// symlink even with the very same bytes: the event goes to its digest name, promptly.
    #[tokio::test]
    async fn obstacles_at_an_events_name_send_it_to_its_digest_name() {
        let dir = temp_dir("obstacles");
        let outside = temp_dir("obstacles-outside");
        fs::create_dir_all(&outside).unwrap();
        let sink = Sink::open(&dir).unwrap();
        type Obstacle = fn(&Path, &Path, &[u8]);
        let obstacles: [(&str, Obstacle); 6] = [
            ("dangling-symlink", |at, outside, _| {
                std::os::unix::fs::symlink(outside.join("missing"), at).unwrap()
            }),
            ("symlink-to-dev-zero", |at, _, _| {
                std::os::unix::fs::symlink("/dev/zero", at).unwrap()
            }),
            ("directory", |at, _, _| fs::create_dir(at).unwrap()),
            ("fifo", |at, _, _| {
                let made = std::process::Command::new("mkfifo")
                    .arg(at)
                    .status()
                    .unwrap();
                assert!(made.success());
            }),
            ("symlink-to-same-bytes", |at, outside, bytes| {
                fs::write(outside.join("same.json"), bytes).unwrap();
                std::os::unix::fs::symlink(outside.join("same.json"), at).unwrap();
            }),
            ("other-bytes", |at, _, _| fs::write(at, b"other").unwrap()),
        ];
        for (id, obstacle) in obstacles {
            let body = format!(r#"{{"data":{{"request_id":"{id}"}}}}"#);
            obstacle(&dir.join(format!("{id}.json")), &outside, body.as_bytes());
            let digested = format!("{id}.{}.json", hex::encode(Sha256::digest(&body)));
            for duplicate in [false, true] {
                let stored = tokio::time::timeout(
                    Duration::from_secs(5),
                    sink.store(VerifiedBody::from_bytes(body.clone())),
                )
                .await
                .unwrap_or_else(|_| panic!("{id}: no answer"))
                .unwrap_or_else(|e| panic!("{id}: {e}"));
                let expected = Stored {
                    file: digested.clone(),
                    duplicate,
                };
                assert_eq!(stored, expected, "{id}");
            }
            let held = fs::symlink_metadata(dir.join(&digested)).unwrap();
            assert!(held.file_type().is_file(), "{id}");
            assert_eq!(fs::read(dir.join(&digested)).unwrap(), body.as_bytes());
        }
        assert!(!outside.join("missing").exists(), "nothing written through");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
        assert_eq!(fs::read_dir(dir.join("directory.json")).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }

    /// The committer lives on the runtime that opened the sink: holding that runtime's only
    /// thread stalls every directory fsync, as a hung filesystem would.
    #[tokio::test]
    async fn a_store_that_outlasts_its_bound_is_a_retryable_503() {
        let dir = temp_dir("stalled");
        let (opened, sink) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let stalled = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let bound = Duration::from_millis(200);
                    opened
                        .send(Sink::open_bounded(&dir, bound).unwrap())
                        .unwrap();
                    let _ = released.recv();
                });
            })
        };
        let mut sink = sink.recv().unwrap();
        let started = std::time::Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            sink.call(Request::new(VerifiedBody::from_bytes(&b"{}"[..]))),
        )
        .await
        .expect("answered within its bound")
        .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.extensions().get::<ProblemCode>(),
            Some(&codes::SINK_UNAVAILABLE)
        );
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        release.send(()).unwrap();
        stalled.join().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_health_probe_fails_while_the_directory_is_gone_and_recovers() {
        let dir = temp_dir("health");
        let sink = Sink::open(&dir).unwrap();
        let check = || sink.shared.clone().check();
        assert_eq!(check().await, Ok(()));
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "the probe cleans up"
        );
        fs::remove_dir_all(&dir).unwrap();
        let cause = check().await.unwrap_err();
        assert!(cause.contains(&dir.display().to_string()), "{cause}");
        fs::write(&dir, b"a file now").unwrap();
        assert!(check().await.is_err());
        fs::remove_file(&dir).unwrap();
        fs::create_dir(&dir).unwrap();
        assert_eq!(check().await, Ok(()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn unwritable_directory_is_a_retryable_503() {
        let dir = temp_dir("gone");
        let mut sink = Sink::open(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let response = sink
            .call(Request::new(VerifiedBody::from_bytes(&b"{}"[..])))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }
}
