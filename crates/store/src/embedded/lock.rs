//! The lock that keeps a cluster directory to one process: a file holding
//! the owner's pid, locked with flock(2). The kernel drops the lock when
//! its holder dies, however it dies, so a server killed with SIGKILL leaves
//! no stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{ClusterError, io_err};

const FILE: &str = "warmspace.pid";

/// Held for as long as the cluster is ours; dropping it unlocks.
#[derive(Debug)]
pub(super) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir` (which must exist) for this process, or says which
    /// process holds it.
    pub(super) fn acquire(dir: &Path) -> Result<DirLock, ClusterError> {
        let path = dir.join(FILE);
        let context = || format!("locking {}", path.display());
        // Not truncated on open: until we hold the lock, the pid in it is the holder's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(context()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                // The holder may not have written its pid yet: then it is unknown.
                file.read_to_string(&mut pid).ok();
                let pid = pid.trim();
                let pid = if pid.is_empty() { "unknown".to_owned() } else { pid.to_owned() };
                return Err(ClusterError::InUse { dir: dir.to_owned(), pid });
            }
            Err(TryLockError::Error(err)) => return Err(io_err(context())(err)),
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(io_err(context()))?;
        Ok(DirLock { _file: file })
    }
}
