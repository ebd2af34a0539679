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

use std::{
    convert::Infallible,
    fs,
    future::Future,
    io::{self, Write},
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use hookgate::{
    body::ResponseBody,
    elevenlabs::event_id,
    problem::{Problem, ProblemCode},
    signature::VerifiedBody,
};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tower::Service;

/// Temp files start with this; leftovers of a crash are removed at start.
const TEMP_PREFIX: &str = ".tmp-";

/// What storing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) file: String,
    pub(crate) duplicate: bool,
}

/// The sink directory, as a tower service answering 200 once the event is durable.
#[derive(Clone)]
pub(crate) struct Sink {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    dir_sync: mpsc::UnboundedSender<oneshot::Sender<Result<(), Arc<io::Error>>>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl Sink {
    /// Opens (creating) the directory, removes temp files a crash left, and starts the
    /// directory-fsync committer. Must run inside a tokio runtime.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        if !dir.is_dir() {
            fs::create_dir_all(dir)?;
            // The new directory's own name must survive a crash too.
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
            fs::File::open(parent.unwrap_or(Path::new(".")))?.sync_all()?;
        }
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                fs::remove_file(entry.path())?;
            }
        }
        // Fail now, not on the first delivery, if the directory cannot be synced.
        fs::File::open(dir)?.sync_all()?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(commit_directory(dir.to_owned(), rx));
        Ok(Self {
            shared: Arc::new(Shared {
                dir: dir.to_owned(),
                dir_sync: tx,
            }),
        })
    }

    /// Stores one event durably; returns once its file and name survive a crash.
    pub(crate) async fn store(&self, body: VerifiedBody) -> io::Result<Stored> {
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
        let result = tokio::task::spawn_blocking(move || fs::File::open(&dir)?.sync_all())
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
            .map_err(Arc::new);
        for waiter in waiting {
            let _ = waiter.send(result.clone());
        }
    }
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
    let name = file_name(&bytes, event_id(&bytes).as_deref());
    // Different events can share an id (a call's transcript and its audio carry one
    // `conversation_id`): a name already holding other bytes sends the event to a name that
    // adds its digest. A redelivery is byte-identical (the signature is in a header), so it
    // meets its own copy under one of the two names.
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
    // Both names hold other bytes: only a SHA-256 collision could do that.
    Err(io::Error::other(format!(
        "{name} and its digest-named twin both hold other events"
    )))
}

/// Stores the event as `name` unless that name exists: `Some(false)` stored now, `Some(true)`
/// already there with these very bytes, `None` taken by other bytes.
fn store_as(dir: &Path, name: &str, body: &VerifiedBody, bytes: &[u8]) -> io::Result<Option<bool>> {
    let target = dir.join(name);
    let same = |target: &Path| -> io::Result<Option<bool>> {
        Ok((fs::read(target)? == bytes).then_some(true))
    };
    if target.exists() {
        return same(&target);
    }
    let temp = dir.join(format!("{TEMP_PREFIX}{}-{name}", fastrand::u64(..)));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        for frame in body.frames() {
            file.write_all(frame)?;
        }
        file.sync_all()?;
        // A hard link never replaces: the first copy of an event wins, atomically.
        match fs::hard_link(&temp, &target) {
            Ok(()) => Ok(Some(false)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => same(&target),
            Err(e) => Err(e),
        }
    })();
    let _ = fs::remove_file(&temp);
    result
}

impl Service<Request<VerifiedBody>> for Sink {
    type Response = Response<ResponseBody<Full<Bytes>>>;
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
                    let mut response =
                        Response::new(ResponseBody::new(Full::new(Bytes::from(body.to_string()))));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    Ok(response)
                }
                Err(error) => {
                    // Our own trouble (disk full, permissions): retryable, never a 4xx.
                    tracing::error!(%error, "event could not be stored");
                    Ok(Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ProblemCode::SINK_UNAVAILABLE,
                    )
                    .with_detail("the event could not be stored; retry later")
                    .with_retry_after(std::time::Duration::from_secs(30))
                    .into_response())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn different_events_sharing_an_id_are_both_stored() {
        let dir = temp_dir("shared-id");
        let sink = Sink::open(&dir).unwrap();
        let transcript = br#"{"type":"post_call_transcription","data":{"conversation_id":"c1"}}"#;
        let audio = br#"{"type":"post_call_audio","data":{"conversation_id":"c1"}}"#;
        let store = |body: &'static [u8]| sink.store(VerifiedBody::from_bytes(body));

        let first = store(transcript).await.unwrap();
        assert_eq!((first.file.as_str(), first.duplicate), ("c1.json", false));
        let second = store(audio).await.unwrap();
        assert!(!second.duplicate, "another event, not a redelivery");
        assert!(second.file.starts_with("c1.") && second.file != "c1.json");
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
        let body = Bytes::from_static(br#"{"data":{"conversation_id":"c9"}}"#);
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
        assert_eq!(fs::read(dir.join("c9.json")).unwrap(), body);
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
