//! The embedded default destination: each verified delivery is stored durably in a directory
//! *before* it is acknowledged, named by its event key, holding exactly the bytes received.
//! [`Sink`]'s documentation says how (a group committer: concurrent events' files synced
//! together, then linked to their names, then one directory fsync for the batch) and why a
//! crash loses no acknowledged event and leaves no name with partial bytes.

use super::codes;
use std::{
    convert::Infallible,
    fs,
    future::Future,
    io::{self, IoSlice, Read, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc, Mutex, PoisonError,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tower_service::Service;

use super::{metrics::HealthCheck, Error};
use crate::{
    body::{ProblemBody, ResponseBody},
    elevenlabs::{event_key, event_key_from_reader},
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

/// How many stores have their files written and synced at once: the committer's threads,
/// started as concurrent stores first need them and kept while the sink is open. Stores beyond
/// wait in its queue.
const SYNC_THREADS: usize = 32;
/// The stack of the committer's threads (they parse an event's key and hash it, no more).
const THREAD_STACK: usize = 256 * 1024;

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
/// whose name holds other bytes goes to `<key>.<body digest>.json`. Storing is durable and
/// grouped: the events of a batch (those waiting when the committer is free) are written to
/// temp files that are `fdatasync`ed concurrently, then hard-linked to their names (never
/// replacing, never following a symlink), then the directory is fsynced once for the batch;
/// see *Durability* below for why a crash at any point loses no acknowledged event and
/// leaves no name with partial bytes. Files are `0600`, whatever the umask. The call
/// answers `200` with `{"stored": "<file>", "duplicate": <bool>}`, or, when the event could
/// not be stored within 10 s (disk full, directory gone, hung filesystem), a retryable
/// `503 sink_unavailable` problem with `Retry-After`: never a `4xx`. A redelivery of an event
/// already stored answers `200` and stores nothing.
///
/// # Storing a batch
///
/// Deliveries are stored by a group committer, so that concurrent deliveries share the syncs
/// that make them durable instead of paying one each. A batch is whatever deliveries are
/// waiting when the committer is free to take them, never a timer: a lone delivery is a batch
/// of one and waits for nothing but its own syncs.
///
/// 1. **Data**: each store is taken by one of the committer's threads (up to 32, started as
///    concurrent stores first need them): the event's name is chosen (see *Names*), a temp
///    file `.tmp-<random>-<name>` is created (`O_CREAT | O_EXCL | O_NOFOLLOW`, mode `0600`),
///    the frames received are written to it as they are (one vectored write, never joined)
///    and it is `fdatasync`ed. Concurrent events' syncs are issued together, one thread each,
///    so the kernel serves them with shared work: on a journaling filesystem one journal
///    commit covers every file written back while it was forming, and the block layer merges
///    the disk cache flushes that wait on one another into one.
/// 2. **Names**: a synced event joins the name stage. The thread that finds no round of it
///    running leads one: it takes every event waiting (the batch), hard-links each temp file
///    to its event's name and removes its temp name, then fsyncs the directory **once** for
///    the whole batch; when it is done, it leads the next round if events are waiting again.
///    The other threads go back to the queue meanwhile, so the next events' data syncs overlap
///    the round. (A lone store is served by one thread from end to end, with no handoff.)
/// 3. Only then is each event of the batch answered, `200`. A failed sync answers every event
///    it was to cover with the error, a retryable `503`: a file's `fdatasync` fails its event
///    (whose temp file is removed and never linked), the directory fsync fails the whole batch.
///
/// # Durability
///
/// The invariant: **a name of the sink only ever refers to a file whose complete bytes are
/// already on stable storage**, and an event is answered `200` only once its name is too.
///
/// - Syncing a file before its name exists: `fdatasync` returns once the file's data and the
///   metadata needed to read it back (its size and block map) are on stable storage, the
///   disk's write cache flushed. Only after that is the file linked to its name, atomically
///   (`link(2)` never replaces what is there and never follows a symlink there), and its bytes
///   are never written again. So the name, whenever it exists, holds the complete bytes.
/// - Syncing the name before answering: the directory fsync that follows the batch's links
///   puts their entries on stable storage; the answers wait for it. An event whose bytes were
///   already under its name (a redelivery) waits for a directory fsync too, since the copy it
///   found may be the link of a batch whose directory fsync has not finished.
///
/// So a crash (SIGKILL or power loss) leaves, for each event in flight:
///
/// - before its link: nothing under its name, at most a temp file (perhaps incomplete) with a
///   `.tmp-` name, which [`Sink::open`] removes before serving. The event was not answered;
///   the sender retries.
/// - between its link and the end of the directory fsync: the name, or not, and if it is
///   there it holds the complete bytes; the temp name may still be there beside it, a second
///   link to the same file, which [`Sink::open`] removes (the name keeps the file). The event
///   was not answered: its retry stores it, or finds this copy and is answered `200`,
///   `"duplicate": true`.
/// - after the directory fsync: the name with the complete bytes, durably; only now may the
///   event have been answered.
///
/// There is nothing to replay: removing the temp files is the whole repair. This rests on what
/// `fdatasync(2)` and a directory `fsync(2)` promise, not on how a filesystem orders its
/// writes between them. (On a filesystem without a journal, such as ext4 without
/// `has_journal`, the filesystem's own bookkeeping, bitmaps and link counts, is put right by
/// `e2fsck` after a power loss, for every program alike.)
///
/// Why not one `syncfs(2)` of the filesystem per batch instead of each file's `fdatasync`:
/// `syncfs` writes back every dirty page of the whole filesystem, so a neighbour writing a
/// build or a log beside the sink would make every batch wait for its hundreds of megabytes.
/// A batch's `fdatasync`s write the batch's own files and their directory, whatever else the
/// disk is doing; only the cache flush is shared with the neighbours, and it is merged.
///
/// # Names
///
/// A name already holding other bytes (two events of one call share a `conversation_id`)
/// sends the event to `<key>.<sha-256 of the body>.json`; a redelivery, byte for byte the
/// same, finds its own copy and stores nothing. Transcripts are private: event files are
/// `0600` and a directory the sink creates is `0700`, whatever the umask. Whatever else sits
/// at an event's name (a symlink, a directory, a FIFO, a device) is never followed, opened or
/// waited on: it counts as "other bytes". Every store, and the `/healthz` probe of the
/// directory, is bounded in time.
///
/// Clones share the directory and its committer.
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
    /// The committer's queue: each store is one job. Closed when the last clone of the sink
    /// is dropped, which ends the committer's threads.
    jobs: mpsc::Sender<Job>,
    committer: Arc<Committer>,
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
    /// a crash left in it, checks that it can be synced and starts its committer (a thread, and
    /// more as concurrent stores need them, 32 at most; they end with the last clone of the
    /// sink).
    ///
    /// # Errors
    ///
    /// [`Error::SinkDirectory`] when the directory cannot be created, read, cleaned or synced,
    /// or the committer's threads cannot be started.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        Self::open_with(dir, STORE_TIMEOUT, Hooks::default()).map_err(|source| {
            Error::SinkDirectory {
                dir: dir.to_owned(),
                source,
            }
        })
    }

    fn open_with(dir: &Path, timeout: Duration, hooks: Hooks) -> io::Result<Self> {
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
        // The whole repair after a crash: a temp file is never an event's only copy.
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                && !entry.file_type()?.is_dir()
            {
                fs::remove_file(entry.path())?;
            }
        }
        // Fail now, not on the first delivery, if the directory cannot be synced; this also
        // makes the removals above durable before anything new is stored.
        sync_dir(dir)?;
        let (jobs, committer) = Committer::start(Arc::from(dir), hooks)?;
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            jobs,
            committer,
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
        let (reply, answer) = oneshot::channel();
        let job = Job { body, reply };
        self.shared.committer.submit(&self.shared.jobs, job)?;
        let answer = async { answer.await.unwrap_or_else(|_| Err(committer_stopped())) };
        bounded(self.shared.timeout, "storing the event", answer).await
    }
}

fn committer_stopped() -> io::Error {
    io::Error::other("sink committer stopped")
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

/// One store waiting for the committer.
struct Job {
    body: VerifiedBody,
    reply: Reply,
}

type Reply = oneshot::Sender<io::Result<Stored>>;

/// An event past the data stage: its temp file synced, or its bytes found under a name.
struct Written {
    body: VerifiedBody,
    reply: Reply,
    step: NameStep,
}

/// What the name stage does for an event.
enum NameStep {
    /// Its bytes were already under this name: nothing to link, but the name may be one a
    /// batch still in flight linked, so the answer waits for a directory fsync all the same.
    Found(String),
    /// Link this synced temp file to the event's name (`second`: to its digest-named twin).
    Link {
        temp: PathBuf,
        names: Names,
        second: bool,
    },
}

/// An event stored, waiting for the directory fsync that makes its name durable.
struct Linked {
    reply: Reply,
    stored: Stored,
}

/// The group committer: up to [`SYNC_THREADS`] threads, each taking the next store queued,
/// writing and syncing its temp file, then handing it to the name stage. Whichever thread finds
/// no round of the name stage running leads one: it takes every event waiting (a batch), links
/// them, fsyncs the directory once and answers them, and leads the next round if more are
/// waiting by then; the others go back to the queue meanwhile. A lone store is thus served by
/// one thread from end to end, with no handoff between threads.
struct Committer {
    /// The stores queued; the thread waiting in `recv` holds the lock.
    queue: Mutex<mpsc::Receiver<Job>>,
    /// Stores queued and not yet taken, threads waiting for one, and all threads started.
    queued: AtomicUsize,
    idle: AtomicUsize,
    threads: Mutex<usize>,
    names: Mutex<NameStage>,
    dir: Arc<Path>,
    hooks: Hooks,
}

/// The events waiting for a round of the name stage, and whether one is running.
#[derive(Default)]
struct NameStage {
    waiting: Vec<Written>,
    leading: bool,
}

impl Committer {
    /// The committer of `dir` with its first thread; returns its queue as well.
    fn start(dir: Arc<Path>, hooks: Hooks) -> io::Result<(mpsc::Sender<Job>, Arc<Self>)> {
        let (jobs, queue) = mpsc::channel();
        let committer = Arc::new(Self {
            queue: Mutex::new(queue),
            queued: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            threads: Mutex::new(0),
            names: Mutex::default(),
            dir,
            hooks,
        });
        // The first thread, started whatever is queued: a sink that cannot start one fails
        // to open.
        committer.spawn_thread()?;
        Ok((jobs, committer))
    }

    /// Queues a store, starting one more thread when more stores are queued than threads wait
    /// for them (up to [`SYNC_THREADS`]): as many concurrent stores as threads have their data
    /// synced at once.
    fn submit(self: &Arc<Self>, jobs: &mpsc::Sender<Job>, job: Job) -> io::Result<()> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        if jobs.send(job).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(committer_stopped());
        }
        // Should it fail, the store waits for a thread that is busy now.
        let _ = self.add_thread();
        Ok(())
    }

    fn add_thread(self: &Arc<Self>) -> io::Result<()> {
        if self.idle.load(Ordering::SeqCst) >= self.queued.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.spawn_thread()
    }

    fn spawn_thread(self: &Arc<Self>) -> io::Result<()> {
        let mut threads = lock(&self.threads);
        if *threads >= SYNC_THREADS {
            return Ok(());
        }
        let committer = self.clone();
        self.idle.fetch_add(1, Ordering::SeqCst);
        if let Err(error) = spawn("hookgate-sink", move || committer.serve()) {
            self.idle.fetch_sub(1, Ordering::SeqCst);
            return Err(error);
        }
        *threads += 1;
        Ok(())
    }

    /// A committer thread: stores until the sink is dropped (its queue closed).
    fn serve(&self) {
        loop {
            let job = lock(&self.queue).recv();
            self.idle.fetch_sub(1, Ordering::SeqCst);
            let Ok(job) = job else { return };
            self.queued.fetch_sub(1, Ordering::SeqCst);
            // A store that gave up waiting (its bound passed) is not started after all: its
            // sender retries.
            if !job.reply.is_closed() {
                if let Some(written) = write_event(&self.dir, job, &self.hooks) {
                    self.name(written);
                }
            }
            self.idle.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Hands a synced event to the name stage, leading its rounds if none is running.
    fn name(&self, written: Written) {
        {
            let mut stage = lock(&self.names);
            stage.waiting.push(written);
            if stage.leading {
                return;
            }
            stage.leading = true;
        }
        loop {
            let batch = {
                let mut stage = lock(&self.names);
                if stage.waiting.is_empty() {
                    stage.leading = false;
                    return;
                }
                std::mem::take(&mut stage.waiting)
            };
            name_batch(&self.dir, batch, &self.hooks);
        }
    }
}

/// `mutex` locked; a thread that panicked holding it left nothing half-done that matters here.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
        .spawn(work)
        .map(drop)
}

/// The data stage of one event: where it goes, and its temp file written and synced. An event
/// that fails here is answered at once.
fn write_event(dir: &Path, job: Job, hooks: &Hooks) -> Option<Written> {
    let Job { body, reply } = job;
    match write_temp(dir, &body, hooks) {
        Ok(step) => Some(Written { body, reply, step }),
        Err(error) => {
            let _ = reply.send(Err(error));
            None
        }
    }
}

/// The name stage of a batch: every event linked, then the directory fsynced once for all of
/// them, then each answered.
fn name_batch(dir: &Path, batch: Vec<Written>, hooks: &Hooks) {
    let _ = hooks.at(SyncPoint::Batch(batch.len()));
    let mut linked = Vec::with_capacity(batch.len());
    for Written { body, reply, step } in batch {
        match link_event(dir, step, &body) {
            Ok(stored) => linked.push(Linked { reply, stored }),
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }
    if linked.is_empty() {
        return;
    }
    let synced = hooks
        .at(SyncPoint::Directory(&linked))
        .and_then(|()| sync_dir(dir));
    match synced {
        Ok(()) => {
            let _ = hooks.at(SyncPoint::Synced(&linked));
            for Linked { reply, stored } in linked {
                let _ = reply.send(Ok(stored));
            }
        }
        // No 200 for an event whose name is not durable: the sender retries, and finds its
        // copy (complete, as every linked file is) or stores it anew.
        Err(error) => {
            for Linked { reply, .. } in linked {
                let _ = reply.send(Err(io::Error::new(
                    error.kind(),
                    format!("syncing the sink directory: {error}"),
                )));
            }
        }
    }
}

/// Where the syncs of the committer stand, for tests to count them, order them and fail them;
/// outside tests a no-op the compiler removes.
#[cfg_attr(not(test), allow(dead_code))]
enum SyncPoint<'a> {
    /// A round of the name stage took a batch of this many events.
    Batch(usize),
    /// About to `fdatasync` the temp file of the event going to this name.
    Data(&'a str),
    /// That `fdatasync` succeeded.
    DataSynced(&'a str),
    /// About to fsync the directory for these events.
    Directory(&'a [Linked]),
    /// The directory fsync for these events succeeded; they are answered next.
    Synced(&'a [Linked]),
}

/// The test hook called at each [`SyncPoint`]: an error it returns replaces the sync.
#[cfg(test)]
type Hook = dyn Fn(SyncPoint<'_>) -> io::Result<()> + Send + Sync;

#[derive(Clone, Default)]
struct Hooks {
    #[cfg(test)]
    hook: Option<Arc<Hook>>,
}

impl Hooks {
    #[cfg_attr(not(test), allow(clippy::unused_self, unused_variables))]
    fn at(&self, point: SyncPoint<'_>) -> io::Result<()> {
        #[cfg(test)]
        if let Some(hook) = &self.hook {
            return hook(point);
        }
        Ok(())
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
    if let Err(error) = file.set_permissions(fs::Permissions::from_mode(FILE_MODE)) {
        let _ = fs::remove_file(path);
        return Err(error);
    }
    Ok(file)
}

/// The file name of an event: its id when the id is a safe file name, otherwise a digest of
/// the id (so redeliveries still meet), or of the body when there is no id.
#[cfg(test)]
fn file_name(body: &[u8], id: Option<&str>) -> String {
    key_file_name(id, || Sha256::digest(body).into())
}

/// [`file_name`], with the body's digest computed only when the name needs it.
fn key_file_name(id: Option<&str>, body_digest: impl FnOnce() -> [u8; 32]) -> String {
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
        None => format!("body-{}.json", hex::encode(body_digest())),
    }
}

/// The SHA-256 of a body, frame by frame.
fn body_digest(body: &VerifiedBody) -> [u8; 32] {
    let mut digest = Sha256::new();
    body.frames().for_each(|frame| digest.update(frame));
    digest.finalize().into()
}

/// The event key of a body, read in place: a body of several frames is parsed through a
/// reader over them, never joined into one buffer.
fn body_key(body: &VerifiedBody) -> Option<String> {
    let mut frames = body.frames();
    match (frames.next(), frames.next()) {
        (None, _) => event_key(b""),
        (Some(only), None) => event_key(only),
        _ => event_key_from_reader(io::BufReader::new(FramesReader {
            frames: body.frames(),
            current: &[],
        })),
    }
}

/// Reads a body's frames one after the other.
struct FramesReader<'a, I> {
    frames: I,
    current: &'a [u8],
}

impl<'a, I: Iterator<Item = &'a Bytes>> Read for FramesReader<'a, I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.frames.next() {
                Some(frame) => self.current = frame,
                None => return Ok(0),
            }
        }
        let n = self.current.len().min(buf.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = &self.current[n..];
        Ok(n)
    }
}

/// An event's two possible names: its key's, and the twin adding its body's digest, made
/// when first needed.
struct Names {
    key: String,
    digested: Option<String>,
}

impl Names {
    fn of(body: &VerifiedBody) -> Self {
        Self {
            key: key_file_name(body_key(body).as_deref(), || body_digest(body)),
            digested: None,
        }
    }

    /// The key's name, or (`second`) the digest-named twin.
    fn get(&mut self, second: bool, body: &VerifiedBody) -> &str {
        if !second {
            return &self.key;
        }
        let key = &self.key;
        self.digested.get_or_insert_with(|| {
            let stem = key.trim_end_matches(".json");
            format!("{stem}.{}.json", hex::encode(body_digest(body)))
        })
    }

    fn both_taken(&self) -> io::Error {
        // By a SHA-256 collision, or by something put there on purpose.
        io::Error::other(format!(
            "{} and its digest-named twin are both taken by other content",
            self.key
        ))
    }
}

/// The data stage: where the event goes (its key's name, unless that holds other bytes, or is
/// anything but a regular file: then its digest-named twin), and a temp file holding its bytes,
/// synced. A redelivery is byte-identical (the signature is in a header), so it meets its own
/// copy under one of the two names, and nothing is written.
fn write_temp(dir: &Path, body: &VerifiedBody, hooks: &Hooks) -> io::Result<NameStep> {
    let mut names = Names::of(body);
    let mut second = false;
    loop {
        let name = names.get(second, body);
        match occupant(&dir.join(name), body)? {
            Occupant::Nothing => break,
            Occupant::Same => return Ok(NameStep::Found(name.to_owned())),
            Occupant::Other if !second => second = true,
            Occupant::Other => return Err(names.both_taken()),
        }
    }
    let name = names.get(second, body);
    let temp = dir.join(format!("{TEMP_PREFIX}{}-{name}", fastrand::u64(..)));
    let mut file = create_private(&temp)?;
    let synced = write_frames(&mut file, body)
        .and_then(|()| hooks.at(SyncPoint::Data(name)))
        .and_then(|()| file.sync_data())
        .inspect(|()| drop(hooks.at(SyncPoint::DataSynced(name))));
    match synced {
        Ok(()) => Ok(NameStep::Link {
            temp,
            names,
            second,
        }),
        Err(error) => {
            let _ = fs::remove_file(&temp);
            Err(error)
        }
    }
}

/// Writes the body's frames as they are, vectored.
fn write_frames(file: &mut fs::File, body: &VerifiedBody) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = body.frames().map(|frame| IoSlice::new(frame)).collect();
    let mut slices = &mut slices[..];
    IoSlice::advance_slices(&mut slices, 0); // skips empty frames
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The name stage of one event: its synced temp file linked to its name (atomically, never
/// replacing anything there; a name taken meanwhile by other bytes sends it to its twin, by
/// the same bytes makes it a duplicate), then the temp name removed.
fn link_event(dir: &Path, step: NameStep, body: &VerifiedBody) -> io::Result<Stored> {
    let (temp, mut names, mut second) = match step {
        NameStep::Found(file) => {
            return Ok(Stored {
                file,
                duplicate: true,
            })
        }
        NameStep::Link {
            temp,
            names,
            second,
        } => (temp, names, second),
    };
    let linked = loop {
        let name = names.get(second, body);
        let target = dir.join(name);
        let duplicate = match fs::hard_link(&temp, &target) {
            Ok(()) => false,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match occupant(&target, body) {
                Ok(Occupant::Same) => true,
                Ok(Occupant::Other) if !second => {
                    second = true;
                    continue;
                }
                Ok(Occupant::Other) => break Err(names.both_taken()),
                Ok(Occupant::Nothing) => {
                    break Err(io::Error::other(format!(
                        "{name} was removed while the event was being stored"
                    )))
                }
                Err(e) => break Err(e),
            },
            Err(e) => break Err(e),
        };
        break Ok(Stored {
            file: name.to_owned(),
            duplicate,
        });
    };
    let _ = fs::remove_file(&temp);
    linked
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

/// What `path` holds compared with `body`, found without following a symlink, opening
/// anything but a regular file, waiting on a FIFO or reading more than `body.len() + 1` bytes.
fn occupant(path: &Path, body: &VerifiedBody) -> io::Result<Occupant> {
    let seen = match fs::symlink_metadata(path) {
        Ok(seen) => seen,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Occupant::Nothing),
        Err(e) => return Err(e),
    };
    if !seen.file_type().is_file() || seen.len() != body.len() as u64 {
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
    let mut held = Vec::with_capacity(body.len() + 1);
    file.take(body.len() as u64 + 1).read_to_end(&mut held)?;
    Ok(if holds(&held, body) {
        Occupant::Same
    } else {
        Occupant::Other
    })
}

/// Whether `held` is exactly the body's bytes.
fn holds(held: &[u8], body: &VerifiedBody) -> bool {
    let mut rest = held;
    for frame in body.frames() {
        match rest.strip_prefix(&frame[..]) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
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
    use std::collections::HashMap;

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

    /// A hook stalling the directory fsync until released, as a hung filesystem would.
    #[tokio::test]
    async fn a_store_that_outlasts_its_bound_is_a_retryable_503() {
        let dir = temp_dir("stalled");
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Mutex::new(released);
        let hooks = hooks(move |point| {
            if let SyncPoint::Directory(_) = point {
                let _ = released.lock().unwrap().recv();
            }
            Ok(())
        });
        let bound = Duration::from_millis(200);
        let mut sink = Sink::open_with(&dir, bound, hooks).unwrap();
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
        drop(sink);
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

    fn hooks(hook: impl Fn(SyncPoint<'_>) -> io::Result<()> + Send + Sync + 'static) -> Hooks {
        Hooks {
            hook: Some(Arc::new(hook)),
        }
    }

    fn transcription(id: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"type":"speech_to_text_transcription","data":{{"request_id":"{id}"}}}}"#
        ))
    }

    /// Shut until opened; the committer's thread waits at it in a hook.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        opened: std::sync::Condvar,
    }

    impl Gate {
        fn wait(&self) {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
        }

        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }
    }

    /// Waits (5 s at most) until `done` holds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let started = std::time::Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(5), "{what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The first `TOGETHER` threads to arrive wait (5 s at most) until they all have: only
    /// syncs issued together pass it promptly.
    #[derive(Default)]
    struct Rendezvous {
        arrived: Mutex<usize>,
        all: std::sync::Condvar,
    }

    const TOGETHER: usize = 8;

    impl Rendezvous {
        fn arrive(&self) {
            let mut arrived = self.arrived.lock().unwrap();
            *arrived += 1;
            if *arrived >= TOGETHER {
                self.all.notify_all();
                return;
            }
            let _ = self
                .all
                .wait_timeout_while(arrived, Duration::from_secs(5), |n| *n < TOGETHER)
                .unwrap();
        }

        fn met(&self) -> bool {
            *self.arrived.lock().unwrap() >= TOGETHER
        }
    }

    /// What the hook saw, numbered on one clock with the moments the stores returned.
    #[derive(Default)]
    struct Trace {
        clock: std::sync::atomic::AtomicU64,
        batches: Mutex<Vec<usize>>,
        /// When each file's data sync had succeeded.
        data: Mutex<HashMap<String, u64>>,
        /// The first data syncs of events named `b-*` wait here for one another.
        together: Rendezvous,
        /// Each directory fsync about to run: when, and for which files.
        directory: Mutex<Vec<(u64, Vec<String>)>>,
        /// When the directory fsync covering each file had succeeded.
        synced: Mutex<HashMap<String, u64>>,
    }

    impl Trace {
        fn tick(&self) -> u64 {
            self.clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        }

        fn record(&self, point: &SyncPoint<'_>) {
            let files = |linked: &[Linked]| -> Vec<String> {
                linked.iter().map(|l| l.stored.file.clone()).collect()
            };
            match point {
                SyncPoint::Batch(size) => self.batches.lock().unwrap().push(*size),
                SyncPoint::Data(name) => {
                    if name.starts_with("b-") {
                        self.together.arrive();
                    }
                }
                SyncPoint::DataSynced(name) => {
                    let at = self.tick();
                    self.data.lock().unwrap().insert((*name).to_owned(), at);
                }
                SyncPoint::Directory(linked) => {
                    let at = self.tick();
                    self.directory.lock().unwrap().push((at, files(linked)));
                }
                SyncPoint::Synced(linked) => {
                    let at = self.tick();
                    let mut synced = self.synced.lock().unwrap();
                    for file in files(linked) {
                        synced.insert(file, at);
                    }
                }
            }
        }
    }

    /// A sink whose first round of the name stage waits at the gate before its directory
    /// fsync: meanwhile the test queues the other events, which then make the next batch.
    fn gated_sink(
        dir: &Path,
        fail: impl Fn(&SyncPoint<'_>) -> io::Result<()> + Send + Sync + 'static,
    ) -> (Sink, Arc<Trace>, Arc<Gate>) {
        let trace = Arc::new(Trace::default());
        let gate = Arc::new(Gate::default());
        let (seen, held) = (trace.clone(), gate.clone());
        let first = std::sync::atomic::AtomicBool::new(true);
        let hook = hooks(move |point| {
            seen.record(&point);
            if matches!(point, SyncPoint::Directory(_))
                && first.swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                held.wait();
            }
            fail(&point)
        });
        let sink = Sink::open_with(dir, STORE_TIMEOUT, hook).unwrap();
        (sink, trace, gate)
    }

    /// Stores `first` (its round held at the gate), then `count` more events concurrently,
    /// waits until `named` of them are synced and waiting for the name stage, opens the gate
    /// and returns every outcome with the tick at which its store returned.
    async fn store_gated(
        sink: &Sink,
        trace: &Arc<Trace>,
        gate: &Gate,
        first: &'static str,
        (count, named): (usize, usize),
    ) -> Vec<(String, io::Result<Stored>, u64)> {
        let spawn = |id: String| {
            let (sink, trace) = (sink.clone(), trace.clone());
            tokio::spawn(async move {
                let stored = sink
                    .store(VerifiedBody::from_bytes(transcription(&id)))
                    .await;
                (id, stored, trace.tick())
            })
        };
        let mut tasks = vec![spawn(first.to_owned())];
        until("the first round reaches its directory fsync", || {
            !trace.directory.lock().unwrap().is_empty()
        })
        .await;
        tasks.extend((0..count).map(|i| spawn(format!("{first}-{i}"))));
        until("the others wait for the name stage", || {
            lock(&sink.shared.committer.names).waiting.len() == named
        })
        .await;
        gate.open();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_events_share_their_syncs_and_are_answered_only_after_them() {
        let dir = temp_dir("batch");
        let (sink, trace, gate) = gated_sink(&dir, |_| Ok(()));
        let outcomes = store_gated(&sink, &trace, &gate, "b", (63, 63)).await;

        let batches = trace.batches.lock().unwrap().clone();
        let rounds = trace.directory.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 64, "{batches:?}");
        assert_eq!(
            batches,
            [1, 63],
            "the first alone, then all that queued behind it"
        );
        assert!(
            rounds.len() <= 2,
            "64 stores cost {} directory fsyncs: {rounds:?}",
            rounds.len()
        );
        let data = trace.data.lock().unwrap().clone();
        let synced = trace.synced.lock().unwrap().clone();
        assert_eq!(data.len(), 64, "each file's data synced");
        assert!(
            trace.together.met(),
            "the data syncs of the batch issued together ({TOGETHER} at once at least)"
        );
        for (id, stored, returned) in outcomes {
            let stored = stored.unwrap_or_else(|e| panic!("{id}: {e}"));
            let file = format!("{id}.json");
            assert_eq!(
                stored,
                Stored {
                    file: file.clone(),
                    duplicate: false
                }
            );
            assert_eq!(fs::read(dir.join(&file)).unwrap(), transcription(&id));
            let (directory, _) = rounds
                .iter()
                .find(|(_, files)| files.contains(&file))
                .unwrap_or_else(|| panic!("{file}: in no directory fsync"));
            assert!(
                data[&file] < *directory,
                "{file}: data synced before its name's round"
            );
            assert!(
                synced[&file] < returned,
                "{file}: answered only after the directory fsync covering it"
            );
        }
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 64, "no temp file left");
        drop(sink);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_directory_fsync_fails_every_event_it_covers() {
        let dir = temp_dir("batch-fails");
        // The round holding many events fails its directory fsync, once.
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let failing = failed.clone();
        let (sink, trace, gate) = gated_sink(&dir, move |point| match point {
            SyncPoint::Directory(linked)
                if linked.len() > 1 && !failing.swap(true, std::sync::atomic::Ordering::SeqCst) =>
            {
                Err(io::Error::other("injected: the disk failed the flush"))
            }
            _ => Ok(()),
        });
        let outcomes = store_gated(&sink, &trace, &gate, "f", (31, 31)).await;
        assert!(failed.load(std::sync::atomic::Ordering::SeqCst));

        let rounds = trace.directory.lock().unwrap().clone();
        let synced = trace.synced.lock().unwrap().clone();
        let failed_round: Vec<String> = rounds
            .iter()
            .flat_map(|(_, files)| files)
            .filter(|file| !synced.contains_key(*file))
            .cloned()
            .collect();
        assert!(failed_round.len() > 1, "{rounds:?}");
        let mut mock = sink.clone();
        for (id, stored, _) in outcomes {
            let file = format!("{id}.json");
            if failed_round.contains(&file) {
                let error = stored.expect_err("no 200 for an event whose fsync failed");
                assert!(error.to_string().contains("injected"), "{error}");
                // The sender's retry: a retryable 503 first, then stored.
                let response = mock
                    .call(Request::new(VerifiedBody::from_bytes(transcription(&id))))
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK, "{id}");
            } else {
                assert!(synced.contains_key(&file), "{file}");
                assert!(!stored.unwrap().duplicate);
            }
            assert_eq!(fs::read(dir.join(&file)).unwrap(), transcription(&id));
        }
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 32);
        drop((sink, mock));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_data_sync_fails_its_event_and_names_nothing() {
        let dir = temp_dir("data-fails");
        // The data sync of `d-3` fails, once.
        let failed = std::sync::atomic::AtomicBool::new(false);
        let (mut sink, trace, gate) = gated_sink(&dir, move |point| match point {
            SyncPoint::Data("d-3.json")
                if !failed.swap(true, std::sync::atomic::Ordering::SeqCst) =>
            {
                Err(io::Error::other("injected: EIO"))
            }
            _ => Ok(()),
        });
        let outcomes = store_gated(&sink, &trace, &gate, "d", (7, 6)).await;
        for (id, stored, _) in outcomes {
            if id == "d-3" {
                assert!(stored.is_err());
                assert!(!dir.join("d-3.json").exists(), "never linked");
            } else {
                assert!(!stored.unwrap().duplicate, "{id}");
            }
        }
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 7, "{names:?}");
        assert!(
            !names.iter().any(|name| name.starts_with(TEMP_PREFIX)),
            "{names:?}"
        );
        let response = sink
            .call(Request::new(VerifiedBody::from_bytes(transcription("d-3"))))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "the retry is stored");
        drop(sink);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// What a crash leaves (a temp file written in part; a temp name still linked beside the
    /// event's name it was linked to) is repaired by opening the sink: the temp names go, every
    /// event's name keeps its complete bytes.
    #[tokio::test]
    async fn open_repairs_what_a_crash_left() {
        let dir = temp_dir("crashed");
        fs::create_dir_all(&dir).unwrap();
        let linked = transcription("linked");
        fs::write(dir.join("linked.json"), &linked).unwrap();
        fs::hard_link(dir.join("linked.json"), dir.join(".tmp-123-linked.json")).unwrap();
        let partial = transcription("partial");
        fs::write(dir.join(".tmp-456-partial.json"), &partial[..10]).unwrap();

        let sink = Sink::open(&dir).unwrap();
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["linked.json"]);
        assert_eq!(fs::read(dir.join("linked.json")).unwrap(), linked);
        assert_eq!(fs::metadata(dir.join("linked.json")).unwrap().nlink(), 1);

        // The sender's retries: one finds its copy, the other is stored.
        let again = sink.store(VerifiedBody::from_bytes(linked)).await.unwrap();
        assert!(again.duplicate);
        let stored = sink
            .store(VerifiedBody::from_bytes(partial.clone()))
            .await
            .unwrap();
        assert_eq!(
            (stored.file.as_str(), stored.duplicate),
            ("partial.json", false)
        );
        assert_eq!(fs::read(dir.join("partial.json")).unwrap(), partial);
        drop(sink);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A body in several frames is named, compared and written frame by frame, never joined.
    #[tokio::test]
    async fn a_body_in_several_frames_is_stored_as_one() {
        let dir = temp_dir("frames");
        let sink = Sink::open(&dir).unwrap();
        let parts: [&'static [u8]; 3] = [
            br#"{"type":"post_call_audio","#,
            br#""data":{"conversation_id":"c7"}"#,
            b"}",
        ];
        let framed = || VerifiedBody::from_frames(parts.map(Bytes::from_static));
        let whole: Vec<u8> = parts.concat();
        let stored = sink.store(framed()).await.unwrap();
        assert_eq!(
            (stored.file.as_str(), stored.duplicate),
            ("c7.post_call_audio.json", false)
        );
        assert_eq!(fs::read(dir.join(&stored.file)).unwrap(), whole);
        // The same bytes framed otherwise are the same event.
        let again = sink
            .store(VerifiedBody::from_bytes(whole.clone()))
            .await
            .unwrap();
        assert_eq!(again, stored.clone().redelivered());
        assert!(sink.store(framed()).await.unwrap().duplicate);

        // Other bytes claiming the name: the framed event's twin is named by its digest.
        let other = temp_dir("frames-other");
        let sink = Sink::open(&other).unwrap();
        fs::write(other.join("c7.post_call_audio.json"), b"other").unwrap();
        let twin = sink.store(framed()).await.unwrap();
        assert_eq!(
            twin.file,
            format!(
                "c7.post_call_audio.{}.json",
                hex::encode(Sha256::digest(&whole))
            )
        );
        assert_eq!(fs::read(other.join(&twin.file)).unwrap(), whole);
        // No key at all: named by the digest of the whole body.
        let keyless =
            VerifiedBody::from_frames([Bytes::from_static(b"{\"a\":"), Bytes::from_static(b"1}")]);
        let stored = sink.store(keyless).await.unwrap();
        assert_eq!(stored.file, file_name(b"{\"a\":1}", None));
        drop(sink);
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&other).unwrap();
    }
}
