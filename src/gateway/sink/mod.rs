//! The embedded default destination: each verified delivery is stored durably in a directory
//! *before* it is acknowledged, named by its event key, holding exactly the bytes received.
//! [`Sink`]'s documentation says how (a group committer: a batch of concurrent events journaled
//! with one sync, then linked to their names; a checkpoint making the names durable with one
//! `syncfs` a second) and why a crash loses no acknowledged event and leaves no name with
//! partial bytes. The journal is in [`journal`].

mod journal;
mod temp;

use journal::Journal;
use temp::{unnamed_files_work, Temp, Unnamed};

use super::codes;
use std::{
    cell::OnceCell,
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
use http_body::Body;
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tower_service::Service;

use super::{metrics::HealthCheck, Error};
use crate::{
    body::ResponseBody,
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

/// How many stores have their temp files written at once: the committer's threads, started as
/// concurrent stores first need them and kept while the sink is open. Stores beyond wait in
/// its queue. Writing a temp file never waits for the disk (nothing is synced there), so a few
/// threads keep the cores busy.
const WRITER_THREADS: usize = 8;
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
/// grouped: the events of a batch (those waiting when the committer is free) are appended to
/// a journal and synced **once**, then each is linked to its name (never replacing, never
/// following a symlink); a checkpoint a second later makes the names themselves durable with
/// one `syncfs(2)` and drops the journal. See *Durability* below for why a crash at any point
/// loses no acknowledged event and leaves no name with partial bytes. Files are `0600`,
/// whatever the umask. The call answers `200` with `{"stored": "<file>", "duplicate": <bool>}`,
/// or, when the event could not be stored within 10 s (disk full, directory gone, hung
/// filesystem), a retryable `503 sink_unavailable` problem with `Retry-After`: never a `4xx`.
/// A redelivery of an event already stored answers `200` and stores nothing.
///
/// The directory is the sink's while it is open: a lock (`.journal/lock`) refuses a second
/// sink on it, in this process or another (opening waits up to 2 s for a sink just dropped to
/// finish its last checkpoint and release it). Readers may read event files and remove them; the
/// hidden entries (`.journal/`, `.tmp-*`) are the sink's own.
///
/// # Storing a batch
///
/// Deliveries are stored by a group committer, so that concurrent deliveries share the sync
/// that makes them durable instead of paying one each. A batch is whatever deliveries are
/// waiting when the committer is free to take them, never a timer: a lone delivery is a batch
/// of one and waits for nothing but its own sync.
///
/// 1. **Data**: each store is taken by one of the committer's threads (up to 8, started as
///    concurrent stores first need them), which reads the event's key and writes the frames
///    received as they are (one vectored write, never joined) to a temp file, not synced: an
///    unnamed one (`O_TMPFILE`, mode `0600`; Linux, up to 256 open at once), or where the
///    filesystem has none a `.tmp-<random>-<name>` file (`O_CREAT | O_EXCL | O_NOFOLLOW`).
/// 2. **Journal**: a written event joins the commit stage. The thread that finds no round of
///    it running leads one: it takes every event waiting (the batch), chooses each one's name
///    (see *Names*), appends one record per event (name, bytes, checksum) to the journal's
///    current segment with one vectored write, and `fdatasync`s the segment **once** for the
///    whole batch.
/// 3. **Names**: then it links each temp file to its name (`linkat`, never replacing; a named
///    temp file's own name is removed after), and only then answers each event of the batch,
///    `200`. It leads the next round if events are waiting by then; the other threads go back
///    to the queue meanwhile, so the next events' temp files are written during the round. A failed journal write or sync answers every
///    event of the batch with the error, a retryable `503`, and links none of them.
/// 4. **Checkpoint**: once its first record is a second old (or it holds 64 MiB), the segment
///    is retired and the next batch starts a new one. A checkpointer thread then calls
///    `syncfs(2)` on the directory's filesystem, which writes back every name linked from the
///    segment and its file, and removes the segment.
///
/// So a batch of any size costs one `fdatasync` before its answers, and every file of a
/// second's worth of batches is written back by the kernel in one pass, off the path of any
/// delivery: no directory fsync and no per-file sync is ever waited for.
///
/// # Durability
///
/// The invariant: **an event is answered `200` only once its complete bytes and its name are
/// in a record of a synced journal segment, and a segment is removed only after a `syncfs`
/// that followed every link made from it.** A record is written before its name exists, and
/// its name is linked to a temp file whose bytes were all written before the link, so a name
/// never exposes a partly written file to a reader while the system runs.
///
/// - `fdatasync` of the segment returns once its appended bytes, and the size needed to read
///   them back, are on stable storage, the disk's write cache flushed; the segment's own name
///   was made durable (a directory fsync) when it was created, before its first record.
/// - A record carries a CRC-32 of the whole record; a record that does not check out ends the
///   reading of its segment. Only the last batch of a segment can be
///   torn (a batch is appended only after the previous one's sync returned, and a failed one
///   retires its segment), and its events were never answered.
/// - `syncfs` returns once every dirty page and inode of the filesystem is written back, the
///   directory entries of the links among them (and reports an error that happened in the
///   write-back since the last one, in which case the segment is kept and the checkpoint
///   retried).
///
/// [`Sink::open`] repairs what a crash left, before serving and under the lock:
///
/// - **The process died (SIGKILL, a panic, an OOM kill), the machine did not**: every segment
///   names the boot it was written in (Linux's `boot_id`). In the same boot, the kernel still
///   holds every link and byte the process made, so nothing is replayed: one `syncfs` makes
///   them durable and the segments are removed. An event linked but not yet answered is there
///   under its name; its retry is answered `200`, `"duplicate": true`.
/// - **The machine stopped (power loss, kernel crash)**: the segments of an earlier boot (or of
///   a system that does not say which boot it is) are replayed in order: each record's name is
///   made to hold exactly its bytes (written to a temp file, `fdatasync`ed, renamed over
///   whatever a torn write left there, the directory fsynced), then the segments are removed.
///   So an acknowledged event is back under its name with its complete bytes. One consequence
///   to know: an event file a reader removed in the last second or so before the power loss
///   (while its segment was not yet checkpointed) comes back; readers should expect an event
///   more than once anyway, as the sender may deliver it twice.
/// - Either way, the temp files (`.tmp-*`) are removed: a temp file is never an event's only
///   copy.
///
/// This rests on what `fdatasync(2)`, a directory `fsync(2)` and `syncfs(2)` promise, not on
/// how a filesystem orders its writes between them. `syncfs` writes back the whole
/// filesystem, a neighbour's writes included; it runs on the checkpointer's own thread, so
/// however long it takes, no delivery waits for it (the journal meanwhile keeps the events).
/// (On a filesystem without a journal, such as ext4 without `has_journal`, the filesystem's
/// own bookkeeping, bitmaps and link counts, is put right by `e2fsck` after a power loss, for
/// every program alike.)
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
    /// Opens the directory (creating it, `0700`, when it is not there), takes its lock,
    /// repairs what a crash left in it (see *Durability*: the journal replayed after a power
    /// loss, the temp files removed), checks that it can be synced and starts its committer (a
    /// thread, and more as concurrent stores need them, 8 at most) and its checkpointer (a
    /// thread); they end with the last clone of the sink, after a last checkpoint, and the lock
    /// is released then.
    ///
    /// # Errors
    ///
    /// [`Error::SinkDirectory`] when the directory cannot be created, read, repaired, cleaned
    /// or synced, when another sink has it open, or when the threads cannot be started.
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
        // The lock first: nothing here may touch the files of a sink still running.
        let opened = journal::open(dir, hooks.boot_id(), hooks.checkpoint_after())?;
        // A temp file is never an event's only copy.
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
        let (jobs, committer) = Committer::start(Arc::from(dir), opened, hooks)?;
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

/// An event past the data stage: its bytes in a temp file (not synced), its name's key read.
struct Written {
    body: VerifiedBody,
    reply: Reply,
    temp: Temp,
    names: Names,
}

/// Where the commit stage sends an event of its batch.
enum Decision {
    /// Link it to this name, once the batch is journaled.
    Store(String),
    /// Its bytes are already under this name (`of`: the name an earlier event of this same
    /// batch will have, whose fate it shares): nothing to link.
    Found { name: String, of: Option<usize> },
}

/// The group committer: up to [`WRITER_THREADS`] threads, each taking the next store queued,
/// writing its temp file, then handing it to the commit stage. Whichever thread finds no round
/// of the commit stage running leads one: it takes every event waiting (a batch), journals
/// them with one sync, links them and answers them, and leads the next round if more are
/// waiting by then; the others go back to the queue meanwhile. A lone store is thus served by
/// one thread from end to end, with no handoff between threads.
struct Committer {
    /// The stores queued; the thread waiting in `recv` holds the lock.
    queue: Mutex<mpsc::Receiver<Job>>,
    /// Stores queued and not yet taken, threads waiting for one, and all threads started.
    queued: AtomicUsize,
    idle: AtomicUsize,
    threads: Mutex<usize>,
    stage: Mutex<CommitStage>,
    /// Temp files unnamed ([`Temp::Unnamed`]) where the filesystem allows, up to a limit.
    unnamed: Unnamed,
    /// Held by the round leader from its append to its last link, and by the checkpointer to
    /// retire a segment: a segment is never retired before the links made from it.
    journal: Arc<Mutex<Journal>>,
    dir: Arc<Path>,
    hooks: Hooks,
}

/// The events waiting for a round of the commit stage, and whether one is running.
#[derive(Default)]
struct CommitStage {
    waiting: Vec<Written>,
    leading: bool,
}

impl Committer {
    /// The committer of `dir` with its first thread and the checkpointer's; returns its queue
    /// as well.
    fn start(
        dir: Arc<Path>,
        opened: journal::Opened,
        hooks: Hooks,
    ) -> io::Result<(mpsc::Sender<Job>, Arc<Self>)> {
        let (jobs, queue) = mpsc::channel();
        let journal = Arc::new(Mutex::new(opened.journal));
        let retiring = Arc::downgrade(&journal);
        let checkpointer = opened.checkpointer;
        spawn("hookgate-sink-checkpoint", move || {
            checkpointer.run(retiring);
        })?;
        let unnamed = Unnamed {
            works: hooks.unnamed_temps() && unnamed_files_work(&dir),
            open: Arc::default(),
        };
        let committer = Arc::new(Self {
            unnamed,
            queue: Mutex::new(queue),
            queued: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            threads: Mutex::new(0),
            stage: Mutex::default(),
            journal,
            dir,
            hooks,
        });
        // The first thread, started whatever is queued: a sink that cannot start one fails
        // to open.
        committer.spawn_thread()?;
        Ok((jobs, committer))
    }

    /// Queues a store, starting one more thread when more stores are queued than threads wait
    /// for them (up to [`WRITER_THREADS`]).
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
        if *threads >= WRITER_THREADS {
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
                if let Some(written) = write_event(&self.dir, &self.unnamed, job, &self.hooks) {
                    self.commit(written);
                }
            }
            self.idle.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Hands a written event to the commit stage, leading its rounds if none is running.
    fn commit(&self, written: Written) {
        {
            let mut stage = lock(&self.stage);
            stage.waiting.push(written);
            if stage.leading {
                return;
            }
            stage.leading = true;
        }
        loop {
            let batch = {
                let mut stage = lock(&self.stage);
                if stage.waiting.is_empty() {
                    stage.leading = false;
                    return;
                }
                std::mem::take(&mut stage.waiting)
            };
            commit_batch(&self.dir, &self.journal, batch, &self.hooks);
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

/// The data stage of one event: its temp file written. An event that fails here is answered
/// at once.
fn write_event(dir: &Path, unnamed: &Unnamed, job: Job, hooks: &Hooks) -> Option<Written> {
    let Job { body, reply } = job;
    match write_temp(dir, unnamed, &body, hooks) {
        Ok((temp, names)) => Some(Written {
            body,
            reply,
            temp,
            names,
        }),
        Err(error) => {
            let _ = reply.send(Err(error));
            None
        }
    }
}

/// The commit stage of a batch: each event's name chosen, the batch journaled with one sync,
/// then each event linked and answered. The journal stays locked from the append to the last
/// link, so the checkpointer never retires a segment before the links made from it.
fn commit_batch(dir: &Path, journal: &Mutex<Journal>, batch: Vec<Written>, hooks: &Hooks) {
    let _ = hooks.at(SyncPoint::Batch(batch.len()));
    let mut journal = lock(journal);
    let mut decided: Vec<(Written, Decision)> = Vec::with_capacity(batch.len());
    for written in batch {
        match decide(dir, &written, &decided) {
            Ok(decision) => decided.push((written, decision)),
            Err(error) => {
                written.temp.discard();
                let _ = written.reply.send(Err(error));
            }
        }
    }
    let entries: Vec<journal::Entry<'_>> = decided
        .iter()
        .filter_map(|(written, decision)| match decision {
            Decision::Store(name) => Some(journal::Entry {
                name,
                body: &written.body,
            }),
            Decision::Found { .. } => None,
        })
        .collect();
    let journaled = if entries.is_empty() {
        Ok(())
    } else {
        journal.append(&entries, || hooks.at(SyncPoint::Journal(&entries)))
    };
    if journaled.is_ok() {
        let _ = hooks.at(SyncPoint::Synced(&entries));
    }
    drop(entries);
    // Each event's outcome, by its place in the batch: an event found under the name of an
    // earlier one of the batch shares that one's.
    let mut linked: Vec<bool> = Vec::with_capacity(decided.len());
    for (written, decision) in decided {
        let Written { reply, temp, .. } = written;
        let outcome = match (&journaled, decision) {
            // No 200 for an event not journaled: the sender retries, and nothing was linked.
            (Err(error), _) => Err(io::Error::new(
                error.kind(),
                format!("writing the sink's journal: {error}"),
            )),
            (Ok(()), Decision::Store(name)) => link(dir, &temp, &name),
            (Ok(()), Decision::Found { name, of }) => {
                if of.is_some_and(|earlier| !linked[earlier]) {
                    Err(io::Error::other(format!(
                        "{name}: the copy of this event being stored failed"
                    )))
                } else {
                    Ok(Stored {
                        file: name,
                        duplicate: true,
                    })
                }
            }
        };
        temp.discard();
        linked.push(outcome.is_ok());
        let _ = reply.send(outcome);
    }
}

/// Where an event of a batch goes: its key's name, unless that holds other bytes or is
/// anything but a regular file (then its digest-named twin). A redelivery is byte-identical
/// (the signature is in a header), so it meets its own copy under one of the two names, on
/// disk or earlier in the same batch, and nothing is stored. The leader of a round is the only
/// one creating names (the directory's lock sees to it across processes), so a name free now
/// is still free when the event is linked to it.
fn decide(dir: &Path, event: &Written, earlier: &[(Written, Decision)]) -> io::Result<Decision> {
    let twin = OnceCell::new();
    for second in [false, true] {
        let name = if second {
            twin.get_or_init(|| event.names.twin(&event.body)).as_str()
        } else {
            event.names.key.as_str()
        };
        let in_batch = earlier
            .iter()
            .position(|(_, decision)| matches!(decision, Decision::Store(taken) if taken == name));
        match in_batch {
            Some(i) if same_bytes(&earlier[i].0.body, &event.body) => {
                return Ok(Decision::Found {
                    name: name.to_owned(),
                    of: Some(i),
                })
            }
            Some(_) => continue,
            None => {}
        }
        match occupant(&dir.join(name), &event.body)? {
            Occupant::Nothing => return Ok(Decision::Store(name.to_owned())),
            Occupant::Same => {
                return Ok(Decision::Found {
                    name: name.to_owned(),
                    of: None,
                })
            }
            Occupant::Other => {}
        }
    }
    Err(event.names.both_taken())
}

/// Links an event's journaled temp file to its chosen name, atomically and never replacing
/// what is there.
fn link(dir: &Path, temp: &Temp, name: &str) -> io::Result<Stored> {
    match temp.link(&dir.join(name)) {
        Ok(()) => Ok(Stored {
            file: name.to_owned(),
            duplicate: false,
        }),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(io::Error::new(
            e.kind(),
            format!("{name} was created by another writer while the event was being stored"),
        )),
        Err(e) => Err(e),
    }
}

/// Where the committer stands, for tests to count its steps, order them and fail them;
/// outside tests a no-op the compiler removes.
#[cfg_attr(not(test), allow(dead_code))]
enum SyncPoint<'a> {
    /// A round of the commit stage took a batch of this many events.
    Batch(usize),
    /// About to write the temp file of the event going to this key name.
    Data(&'a str),
    /// The journal's records for these events written, about to be synced (an error here
    /// fails the sync).
    Journal(&'a [journal::Entry<'a>]),
    /// That sync succeeded; the events are linked and answered next.
    Synced(&'a [journal::Entry<'a>]),
}

/// The test hook called at each [`SyncPoint`]: an error it returns replaces the step.
#[cfg(test)]
type Hook = dyn Fn(SyncPoint<'_>) -> io::Result<()> + Send + Sync;

#[derive(Clone, Default)]
struct Hooks {
    #[cfg(test)]
    hook: Option<Arc<Hook>>,
    /// The boot the sink believes it runs in (`Some(None)`: one it cannot tell).
    #[cfg(test)]
    boot: Option<Option<[u8; 36]>>,
    #[cfg(test)]
    checkpoint_after: Option<Duration>,
    /// Temp files always named, as on a filesystem without unnamed ones.
    #[cfg(test)]
    named_temps: bool,
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

    #[cfg_attr(not(test), allow(clippy::unused_self))]
    fn boot_id(&self) -> Option<[u8; 36]> {
        #[cfg(test)]
        if let Some(boot) = self.boot {
            return boot;
        }
        journal::boot_id()
    }

    #[cfg_attr(not(test), allow(clippy::unused_self))]
    fn unnamed_temps(&self) -> bool {
        #[cfg(test)]
        if self.named_temps {
            return false;
        }
        true
    }

    #[cfg_attr(not(test), allow(clippy::unused_self))]
    fn checkpoint_after(&self) -> Duration {
        #[cfg(test)]
        if let Some(after) = self.checkpoint_after {
            return after;
        }
        journal::CHECKPOINT_AFTER
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

/// Whether two bodies hold the same bytes, however they are framed.
fn same_bytes(a: &VerifiedBody, b: &VerifiedBody) -> bool {
    a.len() == b.len()
        && a.frames()
            .flat_map(|frame| frame.iter())
            .eq(b.frames().flat_map(|frame| frame.iter()))
}

/// An event's key's name; its twin, adding the body's digest, is made only when needed.
struct Names {
    key: String,
}

impl Names {
    fn of(body: &VerifiedBody) -> Self {
        Self {
            key: key_file_name(body_key(body).as_deref(), || body_digest(body)),
        }
    }

    /// The digest-named twin of the key's name.
    fn twin(&self, body: &VerifiedBody) -> String {
        let stem = self.key.trim_end_matches(".json");
        format!("{stem}.{}.json", hex::encode(body_digest(body)))
    }

    fn both_taken(&self) -> io::Error {
        // By a SHA-256 collision, or by something put there on purpose.
        io::Error::other(format!(
            "{} and its digest-named twin are both taken by other content",
            self.key
        ))
    }
}

/// The data stage: the event's key's name, and a temp file holding its bytes (not
/// synced: the journal makes them durable).
fn write_temp(
    dir: &Path,
    unnamed: &Unnamed,
    body: &VerifiedBody,
    hooks: &Hooks,
) -> io::Result<(Temp, Names)> {
    let names = Names::of(body);
    hooks.at(SyncPoint::Data(&names.key))?;
    let mut slices: Vec<IoSlice<'_>> = body.frames().map(|frame| IoSlice::new(frame)).collect();
    let temp = Temp::write(dir, unnamed, &names.key, &mut slices)?;
    Ok((temp, names))
}

/// Writes every slice, vectored, however many calls it takes.
fn write_all_vectored(mut file: impl Write, slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut slices = slices;
    IoSlice::advance_slices(&mut slices, 0); // skips empty slices
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

destination_body!(
    /// The answer body of the [`Sink`]: where the event was stored, or a problem+json body
    /// saying why it could not be. One frame of an exact size.
    SinkBody(Full<Bytes>),
    "So that hookgate's layers in front of a [`Sink`] answer with the same body type."
);

impl SinkBody {
    fn new(inner: ResponseBody<Full<Bytes>>) -> Self {
        Self { inner }
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

    /// The sink directory's entries but its journal, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != journal::JOURNAL_DIR)
            .collect();
        names.sort();
        names
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
        assert_eq!(listing(&dir).len(), 1, "one file, no temp left");
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
        assert_eq!(listing(&dir).len(), 2);
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
        assert_eq!(listing(&dir).len(), 1);
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

    /// A hook stalling the journal sync until released, as a hung filesystem would.
    #[tokio::test]
    async fn a_store_that_outlasts_its_bound_is_a_retryable_503() {
        let dir = temp_dir("stalled");
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Mutex::new(released);
        let hooks = hooks(move |point| {
            if let SyncPoint::Journal(_) = point {
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
        // The stalled store then finishes (the event is stored after all: the sender's retry
        // finds it), and the sink, dropped, releases the directory once it has.
        release.send(()).unwrap();
        drop(sink);
        drop(reopen(&dir, Hooks::default()));
        assert_eq!(listing(&dir).len(), 1, "stored after all");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_health_probe_fails_while_the_directory_is_gone_and_recovers() {
        let dir = temp_dir("health");
        let sink = Sink::open(&dir).unwrap();
        let check = || sink.shared.clone().check();
        assert_eq!(check().await, Ok(()));
        assert_eq!(listing(&dir).len(), 0, "the probe cleans up");
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
            ..Hooks::default()
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

    /// What the hook saw, numbered on one clock with the moments the stores returned.
    #[derive(Default)]
    struct Trace {
        clock: std::sync::atomic::AtomicU64,
        batches: Mutex<Vec<usize>>,
        /// Each journal sync about to run: when, and for which files.
        journal: Mutex<Vec<(u64, Vec<String>)>>,
        /// When the journal sync covering each file had succeeded.
        synced: Mutex<HashMap<String, u64>>,
    }

    impl Trace {
        fn tick(&self) -> u64 {
            self.clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        }

        fn record(&self, point: &SyncPoint<'_>) {
            match point {
                SyncPoint::Batch(size) => self.batches.lock().unwrap().push(*size),
                SyncPoint::Data(_) => {}
                SyncPoint::Journal(entries) => {
                    let at = self.tick();
                    let files = entries.iter().map(|e| e.name.to_owned()).collect();
                    self.journal.lock().unwrap().push((at, files));
                }
                SyncPoint::Synced(entries) => {
                    let at = self.tick();
                    let mut synced = self.synced.lock().unwrap();
                    for entry in *entries {
                        synced.insert(entry.name.to_owned(), at);
                    }
                }
            }
        }
    }

    /// A sink whose first round of the commit stage waits at the gate before its journal
    /// sync: meanwhile the test queues the other events, which then make the next batch.
    fn gated_sink(
        dir: &Path,
        named_temps: bool,
        fail: impl Fn(&SyncPoint<'_>) -> io::Result<()> + Send + Sync + 'static,
    ) -> (Sink, Arc<Trace>, Arc<Gate>) {
        let trace = Arc::new(Trace::default());
        let gate = Arc::new(Gate::default());
        let (seen, held) = (trace.clone(), gate.clone());
        let first = std::sync::atomic::AtomicBool::new(true);
        let hook = hooks(move |point| {
            seen.record(&point);
            if matches!(point, SyncPoint::Journal(_))
                && first.swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                held.wait();
            }
            fail(&point)
        });
        let hooks = Hooks {
            named_temps,
            ..hook
        };
        let sink = Sink::open_with(dir, STORE_TIMEOUT, hooks).unwrap();
        (sink, trace, gate)
    }

    /// Stores `first` (its round held at the gate), then `count` more events concurrently,
    /// waits until `written` of them are written and waiting for the commit stage, opens the
    /// gate and returns every outcome with the tick at which its store returned, and the
    /// directory's listing just before the gate opened.
    async fn store_gated(
        sink: &Sink,
        trace: &Arc<Trace>,
        gate: &Gate,
        first: &'static str,
        (count, written): (usize, usize),
    ) -> (Vec<(String, io::Result<Stored>, u64)>, Vec<String>) {
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
        until("the first round reaches its journal sync", || {
            !trace.journal.lock().unwrap().is_empty()
        })
        .await;
        tasks.extend((0..count).map(|i| spawn(format!("{first}-{i}"))));
        until("the others wait for the commit stage", || {
            lock(&sink.shared.committer.stage).waiting.len() == written
        })
        .await;
        let before = listing(sink.shared.dir.as_path());
        gate.open();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        (outcomes, before)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_events_share_one_journal_sync_and_are_answered_only_after_it() {
        share_one_journal_sync(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_named_temp_files_concurrent_events_share_one_journal_sync_too() {
        share_one_journal_sync(true).await;
    }

    async fn share_one_journal_sync(named_temps: bool) {
        let dir = temp_dir("batch");
        let (sink, trace, gate) = gated_sink(&dir, named_temps, |_| Ok(()));
        let (outcomes, before) = store_gated(&sink, &trace, &gate, "b", (63, 63)).await;
        // While the first batch waited for its journal sync, the others were written, and no
        // event had a name yet: names follow the journal.
        assert!(
            before.iter().all(|name| name.starts_with(TEMP_PREFIX)),
            "{before:?}"
        );
        assert_eq!(
            before.len(),
            if named_temps { 64 } else { 0 },
            "temp files: named only where asked, unnamed (invisible) otherwise: {before:?}"
        );

        let batches = trace.batches.lock().unwrap().clone();
        let rounds = trace.journal.lock().unwrap().clone();
        assert_eq!(
            batches,
            [1, 63],
            "the first alone, then all that queued behind it"
        );
        assert_eq!(
            rounds
                .iter()
                .map(|(_, files)| files.len())
                .collect::<Vec<_>>(),
            [1, 63],
            "64 stores cost 2 journal syncs: {rounds:?}"
        );
        let synced = trace.synced.lock().unwrap().clone();
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
            assert!(
                synced[&file] < returned,
                "{file}: answered only after the journal sync covering it"
            );
        }
        assert_eq!(listing(&dir).len(), 64, "no temp file left");
        drop(sink);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_journal_sync_fails_every_event_it_covers_and_links_none() {
        let dir = temp_dir("batch-fails");
        // The round holding many events fails its journal sync, once.
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let failing = failed.clone();
        let (sink, trace, gate) = gated_sink(&dir, false, move |point| match point {
            SyncPoint::Journal(files)
                if files.len() > 1 && !failing.swap(true, std::sync::atomic::Ordering::SeqCst) =>
            {
                Err(io::Error::other("injected: the disk failed the flush"))
            }
            _ => Ok(()),
        });
        let (outcomes, _) = store_gated(&sink, &trace, &gate, "f", (31, 31)).await;
        assert!(failed.load(std::sync::atomic::Ordering::SeqCst));

        let synced = trace.synced.lock().unwrap().clone();
        let mut retries = Vec::new();
        for (id, stored, _) in outcomes {
            let file = format!("{id}.json");
            if synced.contains_key(&file) {
                assert!(!stored.unwrap().duplicate);
                assert_eq!(fs::read(dir.join(&file)).unwrap(), transcription(&id));
            } else {
                let error = stored.expect_err("no 200 for an event whose journal sync failed");
                assert!(error.to_string().contains("injected"), "{error}");
                assert!(!dir.join(&file).exists(), "{file}: never linked");
                retries.push(id);
            }
        }
        assert_eq!(retries.len(), 31, "the whole batch failed");
        assert_eq!(listing(&dir).len(), 1, "no temp file left");
        // The senders' retries go to a fresh segment and are stored.
        let mut service = sink.clone();
        for id in retries {
            let response = service
                .call(Request::new(VerifiedBody::from_bytes(transcription(&id))))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{id}");
            assert_eq!(
                fs::read(dir.join(format!("{id}.json"))).unwrap(),
                transcription(&id)
            );
        }
        assert_eq!(listing(&dir).len(), 32);
        drop((sink, service));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_temp_write_fails_its_event_and_names_nothing() {
        a_failed_temp_write(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_named_temp_write_fails_its_event_and_names_nothing() {
        a_failed_temp_write(true).await;
    }

    async fn a_failed_temp_write(named_temps: bool) {
        let dir = temp_dir("data-fails");
        // The temp file of `d-3` cannot be written, once.
        let failed = std::sync::atomic::AtomicBool::new(false);
        let (mut sink, trace, gate) = gated_sink(&dir, named_temps, move |point| match point {
            SyncPoint::Data("d-3.json")
                if !failed.swap(true, std::sync::atomic::Ordering::SeqCst) =>
            {
                Err(io::Error::other("injected: EIO"))
            }
            _ => Ok(()),
        });
        let (outcomes, _) = store_gated(&sink, &trace, &gate, "d", (7, 6)).await;
        for (id, stored, _) in outcomes {
            if id == "d-3" {
                assert!(stored.is_err());
                assert!(!dir.join("d-3.json").exists(), "never linked");
            } else {
                assert!(!stored.unwrap().duplicate, "{id}");
            }
        }
        let names = listing(&dir);
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

    /// Stores `first` (its round held at the gate), then `bodies` concurrently, which make the
    /// next batch together; returns their outcomes in order.
    async fn store_batch(
        sink: &Sink,
        trace: &Arc<Trace>,
        gate: &Gate,
        first: &'static str,
        bodies: Vec<Bytes>,
    ) -> Vec<io::Result<Stored>> {
        let spawn = |body: Bytes| {
            let sink = sink.clone();
            tokio::spawn(async move { sink.store(VerifiedBody::from_bytes(body)).await })
        };
        let held = spawn(transcription(first));
        until("the first round reaches its journal sync", || {
            !trace.journal.lock().unwrap().is_empty()
        })
        .await;
        let count = bodies.len();
        let tasks: Vec<_> = bodies.into_iter().map(spawn).collect();
        until("the others wait for the commit stage", || {
            lock(&sink.shared.committer.stage).waiting.len() == count
        })
        .await;
        gate.open();
        held.await.unwrap().unwrap();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        assert_eq!(trace.batches.lock().unwrap()[..], [1, count], "one batch");
        outcomes
    }

    /// Within one batch, a copy of an event meets the event (one file, the copy a duplicate)
    /// and another event claiming its name goes to the digest-named twin.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copies_and_claimants_in_one_batch_are_told_apart() {
        let dir = temp_dir("in-batch");
        let (sink, trace, gate) = gated_sink(&dir, false, |_| Ok(()));
        let event = transcription("dup");
        // As long as the event, so that only its bytes tell them apart.
        let claimant =
            Bytes::from(r#"{"type":"SPEECH_TO_TEXT_TRANSCRIPTION","data":{"request_id":"dup"}}"#);
        assert_eq!(claimant.len(), transcription("dup").len());
        let outcomes = store_batch(
            &sink,
            &trace,
            &gate,
            "first",
            vec![
                event.clone(),
                event.clone(),
                claimant.clone(),
                event.clone(),
            ],
        )
        .await;
        let outcomes: Vec<Stored> = outcomes.into_iter().map(Result::unwrap).collect();
        // The three copies: one file, stored once.
        let copies = [&outcomes[0], &outcomes[1], &outcomes[3]];
        let file = &copies[0].file;
        assert!(copies.iter().all(|copy| &copy.file == file), "{outcomes:?}");
        assert_eq!(copies.iter().filter(|copy| !copy.duplicate).count(), 1);
        // The claimant: stored on its own. Whichever of the two came first in the batch has
        // the name; the other its twin.
        let other = &outcomes[2];
        assert!(!other.duplicate && &other.file != file, "{outcomes:?}");
        let twin = |body: &Bytes| format!("dup.{}.json", hex::encode(Sha256::digest(body)));
        assert!(
            (file == "dup.json" && other.file == twin(&claimant))
                || (other.file == "dup.json" && *file == twin(&event)),
            "{outcomes:?}"
        );
        assert_eq!(fs::read(dir.join(file)).unwrap(), event);
        assert_eq!(fs::read(dir.join(&other.file)).unwrap(), claimant);
        assert_eq!(listing(&dir).len(), 3, "the two, and the first event");
        drop(sink);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A name taken by another writer between the journal and the link (the directory is not
    /// the sink's alone after all) is never replaced: the event, and its copies in the batch,
    /// get a retryable error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_name_taken_before_its_link_fails_the_event_and_its_copies() {
        let dir = temp_dir("taken");
        let intruder = dir.clone();
        let (sink, trace, gate) = gated_sink(&dir, false, move |point| {
            if let SyncPoint::Synced(entries) = point {
                if entries.iter().any(|entry| entry.name == "taken.json") {
                    fs::write(intruder.join("taken.json"), b"another writer's").unwrap();
                }
            }
            Ok(())
        });
        let event = transcription("taken");
        let outcomes = store_batch(&sink, &trace, &gate, "first", vec![event.clone(), event]).await;
        let errors: Vec<String> = outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_err().to_string())
            .collect();
        // Whichever copy came first in the batch was to be linked; the other shares its fate.
        let failed_link = |e: &String| e.contains("created by another writer");
        let failed_copy = |e: &String| e.contains("the copy of this event being stored failed");
        assert!(
            (failed_link(&errors[0]) && failed_copy(&errors[1]))
                || (failed_copy(&errors[0]) && failed_link(&errors[1])),
            "{errors:?}"
        );
        assert_eq!(
            fs::read(dir.join("taken.json")).unwrap(),
            b"another writer's"
        );
        drop(sink);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Opens a sink on `dir` with these hooks (waiting, as any open does, for a sink dropped
    /// just before to release the directory's lock).
    fn reopen(dir: &Path, hooks: Hooks) -> Sink {
        Sink::open_with(dir, STORE_TIMEOUT, hooks).unwrap()
    }

    fn booted(boot: &[u8; 36], checkpoint_after: Duration) -> Hooks {
        Hooks {
            boot: Some(Some(*boot)),
            checkpoint_after: Some(checkpoint_after),
            ..Hooks::default()
        }
    }

    const BOOT: &[u8; 36] = b"11111111-2222-3333-4444-555555555555";
    const NEXT_BOOT: &[u8; 36] = b"66666666-7777-8888-9999-000000000000";

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(dir.join(journal::JOURNAL_DIR))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "seg"))
            .collect();
        found.sort();
        found
    }

    /// Stores three events with a sink that never checkpoints, and returns the journal
    /// segments as they were before the sink was dropped (as a crash would leave them).
    async fn journaled(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let sink = reopen(dir, booted(BOOT, Duration::from_secs(3600)));
        for id in ["j1", "j2", "j3", "j4"] {
            assert!(
                !sink
                    .store(VerifiedBody::from_bytes(transcription(id)))
                    .await
                    .unwrap()
                    .duplicate
            );
        }
        let kept = segments(dir)
            .into_iter()
            .map(|path| {
                let bytes = fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect::<Vec<_>>();
        assert!(!kept.is_empty(), "the events were journaled");
        drop(sink);
        // The dropped sink's last checkpoint retires its segments and releases the lock.
        drop(reopen(dir, Hooks::default()));
        assert!(segments(dir).is_empty(), "a clean close leaves no segment");
        kept
    }

    /// After a power loss (the segments are from another boot), opening replays them: a name
    /// lost or torn holds its complete bytes again; an intact one is left alone.
    #[tokio::test]
    async fn after_a_power_loss_the_journal_restores_every_acknowledged_event() {
        let dir = temp_dir("power-loss");
        let kept = journaled(&dir).await;
        // What a power loss can leave: the link of j1 lost, the bytes of j2 never written (its
        // size set, its blocks zeros), j4 empty.
        fs::remove_file(dir.join("j1.json")).unwrap();
        fs::write(dir.join("j2.json"), vec![0; transcription("j2").len()]).unwrap();
        fs::write(dir.join("j4.json"), b"").unwrap();
        let untouched = fs::metadata(dir.join("j3.json")).unwrap().ino();
        for (path, bytes) in &kept {
            fs::write(path, bytes).unwrap();
        }

        let sink = reopen(&dir, booted(NEXT_BOOT, Duration::from_secs(3600)));
        for id in ["j1", "j2", "j3", "j4"] {
            assert_eq!(
                fs::read(dir.join(format!("{id}.json"))).unwrap(),
                transcription(id),
                "{id}"
            );
        }
        assert_eq!(fs::metadata(dir.join("j3.json")).unwrap().ino(), untouched);
        assert!(segments(&dir).is_empty(), "replayed segments are removed");
        assert_eq!(listing(&dir), ["j1.json", "j2.json", "j3.json", "j4.json"]);
        assert!(
            sink.store(VerifiedBody::from_bytes(transcription("j2")))
                .await
                .unwrap()
                .duplicate
        );
        drop(sink);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// After the process alone died (the same boot), the kernel kept every link: nothing is
    /// replayed, so a file a reader removed stays removed.
    #[tokio::test]
    async fn after_a_process_crash_nothing_is_replayed() {
        let dir = temp_dir("process-crash");
        let kept = journaled(&dir).await;
        fs::remove_file(dir.join("j1.json")).unwrap();
        for (path, bytes) in &kept {
            fs::write(path, bytes).unwrap();
        }
        let sink = reopen(&dir, booted(BOOT, Duration::from_secs(3600)));
        assert_eq!(listing(&dir), ["j2.json", "j3.json", "j4.json"]);
        assert!(segments(&dir).is_empty());
        drop(sink);

        // A system that cannot tell its boot replays, to be safe.
        for (path, bytes) in &kept {
            fs::write(path, bytes).unwrap();
        }
        let unknown = Hooks {
            boot: Some(None),
            ..Hooks::default()
        };
        drop(reopen(&dir, unknown));
        assert_eq!(listing(&dir), ["j1.json", "j2.json", "j3.json", "j4.json"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_second_sink_on_one_directory_is_refused_until_the_first_is_dropped() {
        let dir = temp_dir("locked");
        let first = Sink::open(&dir).unwrap();
        let Err(Error::SinkDirectory { source, .. }) = Sink::open(&dir) else {
            panic!("a second sink opened the same directory");
        };
        assert_eq!(source.kind(), io::ErrorKind::WouldBlock);
        assert!(
            source.to_string().contains("one sink per directory"),
            "{source}"
        );
        drop(first);
        drop(reopen(&dir, Hooks::default()));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Stores the transcription `id`, which must succeed.
    async fn store_transcription(sink: &Sink, id: &str) -> Stored {
        sink.store(VerifiedBody::from_bytes(transcription(id)))
            .await
            .unwrap()
    }

    /// A journal removed from under the sink (its directory deleted and made again) is made
    /// again: the next batch goes to a segment that has a name, not to the orphaned one.
    #[tokio::test]
    async fn a_journal_removed_from_under_the_sink_is_made_again() {
        let dir = temp_dir("journal-removed");
        let sink = reopen(&dir, booted(BOOT, Duration::from_secs(3600)));
        let store = |id: &'static str| store_transcription(&sink, id);
        store("r1").await;
        let first = segments(&dir);
        assert_eq!(first.len(), 1);
        fs::remove_dir_all(dir.join(journal::JOURNAL_DIR)).unwrap();
        store("r2").await;
        let second = segments(&dir);
        assert_eq!(second.len(), 1, "a new segment in a new journal directory");
        let records = fs::read(&second[0]).unwrap();
        assert!(
            records.windows(b"r2.json".len()).any(|w| w == b"r2.json"),
            "r2 journaled in the new segment"
        );
        assert_eq!(listing(&dir), ["r1.json", "r2.json"]);
        drop(sink);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The checkpoint retires a segment once it is due, with or without more deliveries, and
    /// the sink goes on storing in a new one.
    #[tokio::test]
    async fn segments_are_retired_by_the_checkpoint() {
        let dir = temp_dir("checkpoint");
        let sink = reopen(&dir, booted(BOOT, Duration::from_millis(50)));
        let store = |id: &'static str| store_transcription(&sink, id);
        store("k1").await;
        assert_eq!(segments(&dir).len(), 1);
        until("the idle segment is retired", || segments(&dir).is_empty()).await;
        store("k2").await;
        let second = segments(&dir);
        assert_eq!(second.len(), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        // The next batch finds its segment due: retires it and starts another.
        store("k3").await;
        until("the due segment is retired", || {
            !segments(&dir).contains(&second[0])
        })
        .await;
        assert_eq!(listing(&dir), ["k1.json", "k2.json", "k3.json"]);
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
        assert_eq!(listing(&dir), ["linked.json"]);
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
