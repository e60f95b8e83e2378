//! The on-disk side of the write buffer: snapshots the store has not confirmed, kept where a restart,
//! a watchdog kill or an upgrade during a store outage cannot lose them.
//!
//! Layout: `<collector.spool_dir>/<instance id>/` per collector process, holding a `LOCK` file the
//! process keeps locked (`flock`, released by the kernel however the process ends) and numbered files
//! `00000000000000000001.batch`, one JSON document per line and per snapshot, in the order they were
//! taken. A file is written whole (temporary name, fsync, rename, fsync of the directory) or not at
//! all, and deleted once the store has every snapshot in it. A process never touches another live
//! process's directory; a directory whose lock it can take belongs to a collector that is gone (a
//! crash, `kill -9`, a finished `once`) and is adopted: its files move into the adopter's directory
//! and are replayed. Replays are harmless: every row is keyed by its slot and inserted with
//! `ON CONFLICT DO NOTHING`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use uuid::Uuid;

const LOCK: &str = "LOCK";
const EXT: &str = "batch";
const TMP_EXT: &str = "tmp";

/// One file read back: its number in the adopter's directory, its size, and what it held.
#[derive(Debug)]
pub struct Loaded<T> {
    pub seq: u64,
    pub bytes: u64,
    /// Each item with the bytes of its line.
    pub items: Vec<(T, usize)>,
}

/// This process's spool directory, locked while the value lives.
pub struct Spool {
    root: PathBuf,
    dir: PathBuf,
    _lock: File,
    next_seq: u64,
}

impl Spool {
    /// Creates and locks `<root>/<instance>`.
    pub fn open(root: &Path, instance: Uuid) -> io::Result<Self> {
        let dir = root.join(instance.to_string());
        fs::create_dir_all(&dir)?;
        let lock = lock_file(&dir)?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => {
                io::Error::other(format!("{} is locked by another process", dir.display()))
            }
            fs::TryLockError::Error(e) => e,
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            dir,
            _lock: lock,
            next_seq: 1,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `items` as one new file, durably; returns its number and size, and each item's bytes.
    pub fn write<T: Serialize>(&mut self, items: &[T]) -> io::Result<(u64, u64, Vec<usize>)> {
        let mut buf = Vec::new();
        let mut sizes = Vec::with_capacity(items.len());
        for it in items {
            let before = buf.len();
            serde_json::to_writer(&mut buf, it).map_err(io::Error::other)?;
            buf.push(b'\n');
            sizes.push(buf.len() - before);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let tmp = self.dir.join(format!("{seq:020}.{TMP_EXT}"));
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.path(seq))?;
        sync_dir(&self.dir);
        Ok((seq, buf.len() as u64, sizes))
    }

    /// Deletes a file the store has confirmed (or that the size bound dropped).
    pub fn remove(&self, seq: u64) {
        if let Err(e) = fs::remove_file(self.path(seq))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, seq, "cannot delete a spool file");
        }
    }

    /// Takes over the files of every spool directory under the root whose collector is gone, oldest
    /// first, and reads them. A line that does not parse (a torn or damaged file) is skipped and
    /// counted in the log; it never stops the others.
    pub fn adopt_orphans<T: DeserializeOwned>(&mut self) -> Vec<Loaded<T>> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf, PathBuf)> = Vec::new();
        let mut adopted: Vec<(PathBuf, File)> = Vec::new();
        for e in entries.flatten() {
            let dir = e.path();
            if dir == self.dir || !dir.is_dir() {
                continue;
            }
            let Ok(lock) = lock_file(&dir) else { continue };
            if lock.try_lock().is_err() {
                continue; // a live collector's
            }
            let Ok(list) = fs::read_dir(&dir) else { continue };
            for f in list.flatten() {
                let p = f.path();
                match p.extension().and_then(|x| x.to_str()) {
                    Some(EXT) => {
                        let mtime = f
                            .metadata()
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        files.push((mtime, p, dir.clone()));
                    }
                    // Never renamed: its write did not finish, so nobody relied on it.
                    Some(TMP_EXT) => {
                        let _ = fs::remove_file(&p);
                    }
                    _ => {}
                }
            }
            adopted.push((dir, lock));
        }
        // A directory's files in their order (by name); directories by their oldest file.
        let mut oldest: std::collections::HashMap<PathBuf, std::time::SystemTime> = Default::default();
        for (mtime, _, dir) in &files {
            let t = oldest.entry(dir.clone()).or_insert(*mtime);
            *t = (*t).min(*mtime);
        }
        files.sort_by_cached_key(|(_, path, dir)| (oldest.get(dir).copied(), dir.clone(), path.clone()));
        let mut out = Vec::new();
        for (_, path, _) in files {
            let seq = self.next_seq;
            self.next_seq += 1;
            let to = self.path(seq);
            if let Err(e) = fs::rename(&path, &to) {
                tracing::warn!(error = %e, file = %path.display(), "cannot adopt a spool file");
                continue;
            }
            match read_file::<T>(&to) {
                Ok((items, skipped)) => {
                    if skipped > 0 {
                        tracing::warn!(
                            file = %path.display(),
                            skipped_lines = skipped,
                            kept = items.len(),
                            "spool file partly unreadable: skipped its damaged lines"
                        );
                    }
                    if items.is_empty() {
                        self.remove(seq);
                        continue;
                    }
                    let bytes = items.iter().map(|(_, b)| *b as u64).sum();
                    out.push(Loaded { seq, bytes, items });
                }
                Err(e) => {
                    tracing::warn!(error = %e, file = %path.display(), "cannot read a spool file; skipped it");
                    self.remove(seq);
                }
            }
        }
        if !out.is_empty() {
            sync_dir(&self.dir);
        }
        for (dir, lock) in adopted {
            let _ = fs::remove_file(dir.join(LOCK));
            drop(lock);
            if let Err(e) = fs::remove_dir(&dir) {
                tracing::debug!(error = %e, dir = %dir.display(), "cannot remove an adopted spool directory");
            }
        }
        out
    }

    /// At a clean exit with nothing left unwritten: removes the directory, so nobody adopts it.
    pub fn close_empty(self) {
        let has_files = fs::read_dir(&self.dir)
            .map(|l| {
                l.flatten()
                    .any(|f| f.path().extension().and_then(|x| x.to_str()) == Some(EXT))
            })
            .unwrap_or(true);
        if !has_files {
            let _ = fs::remove_file(self.dir.join(LOCK));
            let _ = fs::remove_dir(&self.dir);
        }
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.{EXT}"))
    }
}

fn lock_file(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK))
}

/// A rename is durable once its directory is synced; a failure only weakens durability.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn read_file<T: DeserializeOwned>(path: &Path) -> io::Result<(Vec<(T, usize)>, usize)> {
    let mut items = Vec::new();
    let mut skipped = 0;
    let mut reader = BufReader::new(File::open(path)?);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<T>(&line) {
            Ok(it) => items.push((it, n)),
            Err(_) => skipped += 1,
        }
    }
    Ok((items, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(loaded: &[Loaded<u32>]) -> Vec<u32> {
        loaded
            .iter()
            .flat_map(|l| l.items.iter().map(|(v, _)| *v))
            .collect()
    }

    #[test]
    fn a_gone_collectors_files_are_adopted_in_order_and_a_live_ones_are_not() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut dead = Spool::open(root.path(), Uuid::new_v4()).expect("open");
        dead.write(&[1u32, 2]).expect("write");
        let (seq, _, _) = dead.write(&[3u32]).expect("write");
        dead.write(&[4u32, 5]).expect("write");
        dead.remove(seq); // confirmed by the store: gone
        let mut live = Spool::open(root.path(), Uuid::new_v4()).expect("open");
        live.write(&[100u32]).expect("write");

        let mut next = Spool::open(root.path(), Uuid::new_v4()).expect("open");
        assert!(
            next.adopt_orphans::<u32>().is_empty(),
            "both other directories are locked by live spools"
        );
        drop(dead); // the process ends: the kernel releases its lock
        let loaded = next.adopt_orphans::<u32>();
        assert_eq!(
            ids(&loaded),
            [1, 2, 4, 5],
            "in the order written, confirmed file left out"
        );
        assert!(
            loaded.iter().all(|l| next.path(l.seq).exists()),
            "moved into the adopter's dir"
        );
        assert_eq!(
            fs::read_dir(root.path()).expect("ls").count(),
            2,
            "the dead dir is removed"
        );
        assert_eq!(
            ids(&live.adopt_orphans::<u32>()),
            Vec::<u32>::new(),
            "already adopted"
        );
    }

    #[test]
    fn damaged_lines_and_unfinished_files_are_skipped_not_fatal() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut dead = Spool::open(root.path(), Uuid::new_v4()).expect("open");
        dead.write(&[1u32, 2, 3]).expect("write");
        let (seq, _, _) = dead.write(&[4u32]).expect("write");
        let dir = dead.dir().to_path_buf();
        drop(dead);
        // A torn last line, a line of garbage, an unfinished temporary file, a file of garbage only.
        let first = dir.join(format!("{:020}.{EXT}", seq - 1));
        let mut text = fs::read_to_string(&first).expect("read");
        text.push_str("{\"oops\n");
        text = text.replacen("2\n", "#garbage#\n", 1);
        fs::write(&first, text).expect("damage");
        fs::write(dir.join(format!("{:020}.{TMP_EXT}", seq + 1)), "5\n").expect("tmp");
        fs::write(dir.join(format!("{:020}.{EXT}", seq + 2)), "not json\n").expect("junk");
        let mut next = Spool::open(root.path(), Uuid::new_v4()).expect("open");
        let loaded = next.adopt_orphans::<u32>();
        assert_eq!(ids(&loaded), [1, 3, 4]);
        let files = fs::read_dir(next.dir()).expect("ls").count();
        assert_eq!(
            files, 3,
            "LOCK and the two readable files; the junk file is deleted"
        );
    }

    #[test]
    fn sizes_are_the_bytes_written() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(root.path(), Uuid::new_v4()).expect("open");
        let (seq, bytes, sizes) = s.write(&["ab".to_string(), "c".to_string()]).expect("write");
        assert_eq!(sizes, [5, 4]);
        assert_eq!(bytes, 9);
        assert_eq!(fs::metadata(s.path(seq)).expect("stat").len(), 9);
        s.remove(seq);
        s.close_empty();
        assert_eq!(fs::read_dir(root.path()).expect("ls").count(), 0);
    }
}
