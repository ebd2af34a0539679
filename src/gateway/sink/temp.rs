//! An event's file before it has its name: unnamed (`O_TMPFILE`) where the filesystem has
//! them, a `.tmp-` file otherwise.

use std::{
    fs,
    io::{self, IoSlice, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

#[cfg(any(target_os = "linux", target_os = "android"))]
use super::FILE_MODE;
use super::{create_private, write_all_vectored, TEMP_PREFIX};
#[cfg(any(target_os = "linux", target_os = "android"))]
use std::os::unix::fs::PermissionsExt;

/// An event's file before it has its name.
pub(super) enum Temp {
    /// An unnamed file (`O_TMPFILE`, Linux): nothing in the directory until it is linked to
    /// its name, so writing it never contends with the links for the directory, and a crash
    /// leaves nothing behind. It stays open until then, counted in [`Unnamed`].
    Unnamed { file: fs::File, _held: UnnamedHeld },
    /// A `.tmp-` file, where the filesystem has no unnamed files.
    Named(PathBuf),
}

impl Temp {
    /// A new temp file in `dir`, mode exactly `0600`, holding `slices`: unnamed while
    /// `unnamed` has room.
    pub(super) fn write(
        dir: &Path,
        unnamed: &Unnamed,
        key: &str,
        slices: &mut [IoSlice<'_>],
    ) -> io::Result<Self> {
        if let Some(held) = unnamed.take() {
            let file = create_unnamed(dir)?;
            write_all_vectored(&file, slices)?;
            return Ok(Self::Unnamed { file, _held: held });
        }
        let path = dir.join(format!("{TEMP_PREFIX}{}-{key}", fastrand::u64(..)));
        let written = create_private(&path).and_then(|file| write_all_vectored(&file, slices));
        if let Err(error) = written {
            let _ = fs::remove_file(&path);
            return Err(error);
        }
        Ok(Self::Named(path))
    }

    /// Links the file to `target`, atomically, never replacing what is there.
    pub(super) fn link(&self, target: &Path) -> io::Result<()> {
        match self {
            Self::Unnamed { file, .. } => link_unnamed(file, target),
            Self::Named(path) => fs::hard_link(path, target),
        }
    }

    /// Drops the temp file's own name, if it has one (a linked file keeps its other name).
    pub(super) fn discard(self) {
        if let Self::Named(path) = self {
            let _ = fs::remove_file(path);
        }
    }
}

/// The unnamed temp files open at once: each holds a file descriptor until its event is linked,
/// so past [`UNNAMED_LIMIT`] (a batch larger than that) events get named temp files, which are
/// closed once written.
pub(super) struct Unnamed {
    /// Whether the directory's filesystem has unnamed files.
    pub(super) works: bool,
    pub(super) open: Arc<AtomicUsize>,
}

/// How many unnamed temp files may be open at once.
pub(super) const UNNAMED_LIMIT: usize = 256;

/// One unnamed temp file counted in [`Unnamed`] until dropped.
pub(super) struct UnnamedHeld(Arc<AtomicUsize>);

impl Drop for UnnamedHeld {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Unnamed {
    /// Room for one more unnamed file, if the filesystem has them and the limit allows.
    fn take(&self) -> Option<UnnamedHeld> {
        if !self.works {
            return None;
        }
        let taken = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                (open < UNNAMED_LIMIT).then_some(open + 1)
            });
        taken.ok().map(|_| UnnamedHeld(self.open.clone()))
    }
}

/// An unnamed file in `dir` (`O_TMPFILE`), mode exactly `0600`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn create_unnamed(dir: &Path) -> io::Result<fs::File> {
    use rustix::fs::{open, Mode, OFlags};
    let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
    let file = fs::File::from(open(dir, flags, Mode::from_raw_mode(FILE_MODE))?);
    // The umask can only take bits away; this puts back any it took.
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Gives an unnamed file its name: `linkat` through `/proc/self/fd`, which needs no privilege
/// (`AT_EMPTY_PATH` would).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn link_unnamed(file: &fs::File, target: &Path) -> io::Result<()> {
    use rustix::fs::{linkat, AtFlags, CWD};
    use std::os::fd::AsRawFd;
    let source = format!("/proc/self/fd/{}", file.as_raw_fd());
    Ok(linkat(
        CWD,
        source.as_str(),
        CWD,
        target,
        AtFlags::SYMLINK_FOLLOW,
    )?)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn create_unnamed(_dir: &Path) -> io::Result<fs::File> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn link_unnamed(_file: &fs::File, _target: &Path) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Whether unnamed temp files work in `dir`: one is created, written, linked to a temp name
/// and removed.
pub(super) fn unnamed_files_work(dir: &Path) -> bool {
    let probe = dir.join(format!("{TEMP_PREFIX}unnamed-{}", fastrand::u64(..)));
    let linked = create_unnamed(dir).and_then(|mut file| {
        file.write_all(b"probe\n")?;
        link_unnamed(&file, &probe)
    });
    let _ = fs::remove_file(&probe);
    linked.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_temp_files_are_bounded_and_counted_until_dropped() {
        let unnamed = Unnamed {
            works: true,
            open: Arc::default(),
        };
        let mut held: Vec<UnnamedHeld> = (0..UNNAMED_LIMIT).map_while(|_| unnamed.take()).collect();
        assert_eq!(held.len(), UNNAMED_LIMIT);
        assert!(
            unnamed.take().is_none(),
            "past the limit: a named temp file"
        );
        held.pop();
        let again = unnamed.take();
        assert!(again.is_some(), "room again once one is dropped");
        assert!(unnamed.take().is_none());
        drop((held, again));
        assert_eq!(unnamed.open.load(Ordering::SeqCst), 0);
        let unsupported = Unnamed {
            works: false,
            open: Arc::default(),
        };
        assert!(unsupported.take().is_none());
    }
}
