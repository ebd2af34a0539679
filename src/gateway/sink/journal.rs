//! The sink's journal: the bytes of a batch of events appended to one segment file and synced
//! once, before any of their names exists; segments retired by a checkpoint that makes the names
//! durable with one `syncfs(2)`; and the repair at open, which replays a segment only when the
//! machine restarted since it was written.
//!
//! A segment (`<sink>/.journal/<16 hex digits>.seg`) starts with a header naming the boot it was
//! written in (Linux's `boot_id`), then holds records, appended a batch at a time:
//!
//! ```text
//! "HGR1" | name length (u16 LE) | body length (u64 LE) | name | body | CRC-32 of all before (u32 LE)
//! ```
//!
//! A record is read back only when its checksum holds, and reading stops at the first one that
//! does not: the torn tail of a batch whose sync never returned (its events were never
//! answered). A CRC-32 is what databases' write-ahead logs use against torn writes (it catches
//! every burst of up to 32 bits and all but one in 2^32 of the rest); the journal is the sink's
//! own, in its private directory, so it guards against the disk, not against an adversary. A name is read back only when it is a plain file name (no `/`, not starting with
//! `.`), so a damaged or forged segment cannot write outside the directory.

use std::{
    fs,
    io::{self, IoSlice, Read, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{mpsc, Mutex, Weak},
    time::{Duration, Instant},
};

use super::{create_private, lock, sync_dir, write_all_vectored, DIR_MODE, FILE_MODE, TEMP_PREFIX};
use crate::signature::VerifiedBody;

/// The journal's directory, inside the sink's: hidden, so that readers of events skip it.
pub(super) const JOURNAL_DIR: &str = ".journal";
/// Held locked (`flock`) while a sink has the directory open: one sink per directory.
const LOCK_FILE: &str = "lock";
const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_MAGIC: &[u8; 8] = b"HGSEG01\n";
const RECORD_MAGIC: &[u8; 4] = b"HGR1";
/// `/proc/sys/kernel/random/boot_id`: 36 characters, a UUID.
const BOOT_ID_LEN: usize = 36;
const HEADER_LEN: usize = SEGMENT_MAGIC.len() + BOOT_ID_LEN + 1;
/// Written for a boot id that cannot be read: never equal to a real one, so such a segment is
/// always replayed.
const UNKNOWN_BOOT: [u8; BOOT_ID_LEN] = [b'?'; BOOT_ID_LEN];
/// An event's name is far shorter (at most 128 bytes of id, a digest and `.json`).
const MAX_NAME: usize = 1024;
/// A segment older than this (by its first record) is retired at the next batch, or by the
/// checkpointer when no batch comes.
pub(super) const CHECKPOINT_AFTER: Duration = Duration::from_secs(1);
/// A segment larger than this is retired at the next batch.
const SEGMENT_LIMIT: u64 = 64 << 20;

/// The boot this process runs in, if the system says.
pub(super) fn boot_id() -> Option<[u8; BOOT_ID_LEN]> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    id.trim().as_bytes().try_into().ok()
}

/// One event to journal: the name it will be linked to, and its bytes.
pub(super) struct Entry<'a> {
    pub(super) name: &'a str,
    pub(super) body: &'a VerifiedBody,
}

/// The open journal of a sink: the segment being appended to, and where retired ones go.
pub(super) struct Journal {
    dir: PathBuf,
    boot: [u8; BOOT_ID_LEN],
    next: u64,
    active: Option<Segment>,
    retired: mpsc::Sender<PathBuf>,
    checkpoint_after: Duration,
}

struct Segment {
    file: fs::File,
    path: PathBuf,
    opened: Instant,
    len: u64,
}

impl Journal {
    /// Appends a batch's records to the active segment (a new one when there is none, or it is
    /// due for its checkpoint) with one vectored write, then `fdatasync`s it: once this returns
    /// `Ok`, every event of the batch survives a crash. On failure the segment is retired
    /// (it may end in a torn record) and the next batch starts a new one. `before_sync` runs
    /// between the write and the sync (tests fail the sync there).
    pub(super) fn append(
        &mut self,
        entries: &[Entry<'_>],
        before_sync: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        // Due for its checkpoint, or removed from under the sink (the directory deleted and
        // made again): a segment without a name would keep nothing through a power loss.
        if self.active.as_ref().is_some_and(|s| {
            s.opened.elapsed() >= self.checkpoint_after
                || s.len >= SEGMENT_LIMIT
                || s.file.metadata().map_or(true, |m| m.nlink() == 0)
        }) {
            self.retire();
        }
        if self.active.is_none() {
            self.active = Some(self.open_segment()?);
        }
        let segment = self.active.as_mut().expect("a segment was just opened");
        let heads: Vec<Vec<u8>> = entries.iter().map(head).collect();
        let tails: Vec<[u8; 4]> = entries
            .iter()
            .zip(&heads)
            .map(|(e, h)| tail(e, h))
            .collect();
        let mut slices = Vec::with_capacity(entries.len() * 3);
        for ((entry, head), tail) in entries.iter().zip(&heads).zip(&tails) {
            slices.push(IoSlice::new(head));
            slices.extend(entry.body.frames().map(|frame| IoSlice::new(frame)));
            slices.push(IoSlice::new(tail));
        }
        let len: usize = slices.iter().map(|s| s.len()).sum();
        let written = write_all_vectored(&mut segment.file, &mut slices)
            .and_then(|()| before_sync())
            .and_then(|()| segment.file.sync_data());
        match written {
            Ok(()) => {
                segment.len += len as u64;
                Ok(())
            }
            Err(error) => {
                self.retire();
                Err(error)
            }
        }
    }

    /// A new segment, its name durable before any record in it is acknowledged.
    fn open_segment(&mut self) -> io::Result<Segment> {
        let path = self.dir.join(format!("{:016x}{SEGMENT_SUFFIX}", self.next));
        self.next += 1;
        let create = || {
            fs::OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path)
        };
        let mut file = match create() {
            // The journal's directory removed (with the sink's, made again since): made again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_journal_dir(&self.dir)?;
                create()?
            }
            created => created?,
        };
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(SEGMENT_MAGIC);
        header.extend_from_slice(&self.boot);
        header.push(b'\n');
        let opened = file.write_all(&header).and_then(|()| sync_dir(&self.dir));
        if let Err(error) = opened {
            let _ = fs::remove_file(&path);
            return Err(error);
        }
        Ok(Segment {
            file,
            path,
            opened: Instant::now(),
            len: HEADER_LEN as u64,
        })
    }

    /// Hands the active segment to the checkpointer; the next batch starts a new one.
    pub(super) fn retire(&mut self) {
        if let Some(segment) = self.active.take() {
            // The checkpointer is gone only once the journal is: never here.
            let _ = self.retired.send(segment.path);
        }
    }

    /// Whether the active segment is due for its checkpoint.
    fn due(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|s| s.opened.elapsed() >= self.checkpoint_after)
    }
}

/// The checkpointer's segment still open at the end: retired with the journal.
impl Drop for Journal {
    fn drop(&mut self) {
        self.retire();
    }
}

/// The part of a record before the body.
fn head(entry: &Entry<'_>) -> Vec<u8> {
    let name = entry.name.as_bytes();
    let mut head = Vec::with_capacity(4 + 2 + 8 + name.len());
    head.extend_from_slice(RECORD_MAGIC);
    head.extend_from_slice(&(name.len() as u16).to_le_bytes());
    head.extend_from_slice(&(entry.body.len() as u64).to_le_bytes());
    head.extend_from_slice(name);
    head
}

/// The part of a record after the body: the checksum of the whole.
fn tail(entry: &Entry<'_>, head: &[u8]) -> [u8; 4] {
    let mut crc = crc32fast::Hasher::new();
    crc.update(head);
    entry.body.frames().for_each(|frame| crc.update(frame));
    crc.finalize().to_le_bytes()
}

/// The records of a segment, up to the first that does not read back whole.
fn records(segment: &[u8]) -> Vec<(&str, &[u8])> {
    let mut found = Vec::new();
    let Some(mut rest) = segment
        .strip_prefix(&SEGMENT_MAGIC[..])
        .and_then(|rest| rest.get(BOOT_ID_LEN + 1..))
    else {
        return found;
    };
    while let Some((name, body, after)) = record(rest) {
        found.push((name, body));
        rest = after;
    }
    found
}

/// The record at the start of `bytes`, and what follows it.
fn record(bytes: &[u8]) -> Option<(&str, &[u8], &[u8])> {
    let rest = bytes.strip_prefix(&RECORD_MAGIC[..])?;
    let name_len = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
    let body_len = u64::from_le_bytes(rest.get(2..10)?.try_into().ok()?);
    let body_len = usize::try_from(body_len).ok()?;
    let head_len = RECORD_MAGIC.len() + 10 + name_len;
    let head = bytes.get(..head_len)?;
    let body_end = head_len.checked_add(body_len)?;
    let body = bytes.get(head_len..body_end)?;
    let checked = bytes.get(body_end..body_end + 4)?;
    if checked != crc32fast::hash(&bytes[..body_end]).to_le_bytes() {
        return None;
    }
    let name = std::str::from_utf8(&head[RECORD_MAGIC.len() + 10..]).ok()?;
    if !plain_name(name) {
        return None;
    }
    Some((name, body, &bytes[body_end + 4..]))
}

/// A name in the sink's directory itself: never a path, a hidden name or a temp name.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && !name.contains(['/', '\0'])
}

/// The boot a segment was written in, from its header.
fn segment_boot(path: &Path) -> io::Result<Option<[u8; BOOT_ID_LEN]>> {
    let mut header = [0; HEADER_LEN];
    match fs::File::open(path)?.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if !header.starts_with(SEGMENT_MAGIC) {
        return Ok(None);
    }
    Ok(header[SEGMENT_MAGIC.len()..HEADER_LEN - 1].try_into().ok())
}

/// What [`open`] leaves for the sink to run with: its journal, and the checkpointer's work.
pub(super) struct Opened {
    pub(super) journal: Journal,
    pub(super) checkpointer: Checkpointer,
}

/// Opens the journal of the sink directory `dir`: takes its lock (one sink per directory;
/// waiting a moment for a sink just dropped to release it), then repairs what a crash left. A segment written in this same boot needs no replay (the
/// kernel still holds every name its events were linked to, and the `syncfs` makes them
/// durable); a segment from an earlier boot (a power loss, a kernel crash) is replayed: each
/// record's name made to hold exactly its bytes (written to a temp file, synced, renamed over
/// whatever a torn write left there), in order. Then the segments are removed.
pub(super) fn open(
    dir: &Path,
    boot: Option<[u8; BOOT_ID_LEN]>,
    checkpoint_after: Duration,
) -> io::Result<Opened> {
    let journal_dir = dir.join(JOURNAL_DIR);
    if !journal_dir.is_dir() {
        create_journal_dir(&journal_dir)?;
    }
    let lock_file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(journal_dir.join(LOCK_FILE))?;
    take_lock(&lock_file)?;
    let mut segments = Vec::new();
    for entry in fs::read_dir(&journal_dir)? {
        let name = entry?.file_name();
        let seq = name
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| u64::from_str_radix(n, 16).ok());
        if let Some(seq) = seq {
            segments.push((seq, journal_dir.join(name)));
        }
    }
    segments.sort();
    let next = segments.last().map_or(0, |(seq, _)| seq + 1);
    if !segments.is_empty() {
        let mut same_boot = boot.is_some();
        for (_, path) in &segments {
            same_boot &= segment_boot(path)? == boot;
        }
        if !same_boot {
            for (_, path) in &segments {
                for (name, body) in records(&fs::read(path)?) {
                    restore(dir, name, body)?;
                }
            }
            sync_dir(dir)?;
        }
        sync_filesystem(&lock_file)?;
        for (_, path) in &segments {
            fs::remove_file(path)?;
        }
        sync_dir(&journal_dir)?;
    }
    let (retired, queue) = mpsc::channel();
    Ok(Opened {
        journal: Journal {
            dir: journal_dir.clone(),
            boot: boot.unwrap_or(UNKNOWN_BOOT),
            next,
            active: None,
            retired,
            checkpoint_after,
        },
        checkpointer: Checkpointer {
            journal_dir,
            queue,
            lock_file,
            every: checkpoint_after,
            pending: Vec::new(),
        },
    })
}

/// Creates the journal's directory, `0700`, its name durable in the sink's.
fn create_journal_dir(journal_dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(DIR_MODE).create(journal_dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        created => created?,
    }
    fs::set_permissions(journal_dir, fs::Permissions::from_mode(DIR_MODE))?;
    sync_dir(journal_dir.parent().unwrap_or(Path::new(".")))
}

/// How long opening waits for the lock: a sink just dropped releases it after its last
/// checkpoint, moments later.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Takes the directory's lock, waiting for it at most [`LOCK_WAIT`].
fn take_lock(lock_file: &fs::File) -> io::Result<()> {
    let started = Instant::now();
    loop {
        match lock_file.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another sink has this directory open (one sink per directory)",
                ))
            }
            Err(fs::TryLockError::Error(error)) => return Err(error),
        }
    }
}

/// Makes `dir/name` hold exactly `body`, durably: left alone when it already does.
fn restore(dir: &Path, name: &str, body: &[u8]) -> io::Result<()> {
    let path = dir.join(name);
    let holds = fs::symlink_metadata(&path)
        .is_ok_and(|seen| seen.file_type().is_file() && seen.len() == body.len() as u64)
        && fs::read(&path).is_ok_and(|held| held == body);
    if holds {
        return Ok(());
    }
    let temp = dir.join(format!("{TEMP_PREFIX}{}-{name}", fastrand::u64(..)));
    let written = create_private(&temp).and_then(|mut file| {
        file.write_all(body)?;
        file.sync_data()
    });
    let restored = written.and_then(|()| fs::rename(&temp, &path));
    if restored.is_err() {
        let _ = fs::remove_file(&temp);
    }
    restored
}

/// Writes back everything cached for the filesystem holding `on` (Linux's `syncfs(2)`; a
/// whole-system `sync(2)` elsewhere), and reports a write-back error.
fn sync_filesystem(on: &fs::File) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    rustix::fs::syncfs(on)?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        rustix::fs::sync();
        on.sync_all()?;
    }
    Ok(())
}

/// The checkpointer's thread: retires segments once the names their events were linked to are
/// durable, and holds the directory's lock until it is done.
pub(super) struct Checkpointer {
    journal_dir: PathBuf,
    queue: mpsc::Receiver<PathBuf>,
    lock_file: fs::File,
    every: Duration,
    /// Segments whose checkpoint failed: tried again at the next tick.
    pending: Vec<PathBuf>,
}

impl Checkpointer {
    /// Runs until the journal is dropped, then retires what is left and releases the lock.
    pub(super) fn run(mut self, journal: Weak<Mutex<Journal>>) {
        loop {
            match self.queue.recv_timeout(self.every) {
                Ok(segment) => {
                    self.pending.push(segment);
                    self.checkpoint();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(journal) = journal.upgrade() {
                        let mut journal = lock(&journal);
                        if journal.due() {
                            journal.retire();
                        }
                    }
                    self.checkpoint();
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.checkpoint();
        drop(self.lock_file);
    }

    /// Every name linked from the pending segments made durable by one `syncfs`, then the
    /// segments removed. Names are only ever linked under the journal's lock after their
    /// segment's append, and a segment is retired under that lock, so by now they all exist.
    fn checkpoint(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // Through the lock file's descriptor: it works even should the directory have been
        // removed from under the sink.
        if let Err(error) = sync_filesystem(&self.lock_file) {
            tracing::warn!(%error, "sink checkpoint: syncing the filesystem failed; retrying");
            return;
        }
        self.pending
            .retain(|segment| match fs::remove_file(segment) {
                Ok(()) => false,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(error) => {
                    tracing::warn!(%error, "sink checkpoint: removing a journal segment failed");
                    true
                }
            });
        if let Err(error) = sync_dir(&self.journal_dir) {
            tracing::warn!(%error, "sink checkpoint: syncing the journal directory failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn segment(boot: &[u8; BOOT_ID_LEN], events: &[(&str, &[u8])]) -> Vec<u8> {
        let mut bytes = SEGMENT_MAGIC.to_vec();
        bytes.extend_from_slice(boot);
        bytes.push(b'\n');
        for (name, body) in events {
            let body = VerifiedBody::from_bytes(Bytes::copy_from_slice(body));
            let entry = Entry { name, body: &body };
            let head = head(&entry);
            bytes.extend_from_slice(&head);
            bytes.extend_from_slice(body.frames().next().unwrap());
            bytes.extend_from_slice(&tail(&entry, &head));
        }
        bytes
    }

    const EVENTS: [(&str, &[u8]); 3] = [
        ("a.json", b"{\"a\":1}"),
        ("b.json", b"{\"b\":22}"),
        ("c.json", b"{\"c\":333}"),
    ];

    #[test]
    fn records_read_back_whole_and_a_torn_tail_is_dropped() {
        let bytes = segment(&UNKNOWN_BOOT, &EVENTS);
        assert_eq!(records(&bytes), EVENTS);
        // Every cut: exactly the records wholly before it.
        let ends: Vec<usize> = (0..=EVENTS.len())
            .map(|n| segment(&UNKNOWN_BOOT, &EVENTS[..n]).len())
            .collect();
        for cut in 0..bytes.len() {
            let whole = if cut < HEADER_LEN {
                0
            } else {
                ends.iter().filter(|&&end| end <= cut).count() - 1
            };
            assert_eq!(records(&bytes[..cut]), EVENTS[..whole], "cut at {cut}");
        }
    }

    #[test]
    fn a_damaged_record_ends_the_reading() {
        let bytes = segment(&UNKNOWN_BOOT, &EVENTS);
        let first_end = segment(&UNKNOWN_BOOT, &EVENTS[..1]).len();
        // Any byte of the second record flipped: the first alone reads back.
        for at in first_end..segment(&UNKNOWN_BOOT, &EVENTS[..2]).len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            assert_eq!(records(&damaged), EVENTS[..1], "byte {at} flipped");
        }
        let mut header = bytes.clone();
        header[0] = b'X';
        assert!(records(&header).is_empty());
    }

    #[test]
    fn only_plain_names_are_read_back() {
        for name in ["../escape.json", ".hidden", "", "a/b.json", "nul\0.json"] {
            let bytes = segment(&UNKNOWN_BOOT, &[(name, b"{}")]);
            assert!(records(&bytes).is_empty(), "{name:?}");
        }
        assert!(plain_name("ok.json"));
        assert!(plain_name(&"n".repeat(MAX_NAME)));
        assert!(!plain_name(&"n".repeat(MAX_NAME + 1)));
    }

    #[test]
    fn the_boot_is_the_one_the_system_names() {
        match fs::read_to_string("/proc/sys/kernel/random/boot_id") {
            Ok(id) => assert_eq!(
                boot_id().map(|boot| boot.to_vec()),
                Some(id.trim().as_bytes().to_vec())
            ),
            Err(_) => assert_eq!(boot_id(), None),
        }
    }

    #[test]
    fn a_segment_names_its_boot() {
        let dir = std::env::temp_dir().join(format!("hookgate-journal-{}", fastrand::u64(..)));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.seg");
        let boot = *b"0123456789abcdef0123456789abcdef0123";
        fs::write(&path, segment(&boot, &EVENTS)).unwrap();
        assert_eq!(segment_boot(&path).unwrap(), Some(boot));
        fs::write(&path, &segment(&boot, &[])[..HEADER_LEN - 1]).unwrap();
        assert_eq!(segment_boot(&path).unwrap(), None, "a torn header");
        fs::write(
            &path,
            b"not a segment at all, but long enough to hold a header",
        )
        .unwrap();
        assert_eq!(segment_boot(&path).unwrap(), None);
        // What cannot be read is an error, not a segment of an unknown boot.
        let unreadable = dir.join("1.seg");
        fs::create_dir(&unreadable).unwrap();
        assert!(segment_boot(&unreadable).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
