//! The data directory's lock: an exclusive `flock` on the directory itself, held for as long as
//! a persister uses the directory.
//!
//! RocksDB locks its own `LOCK` file as well, but reports a conflict only as an IO error whose
//! text would have to be parsed (and that text contains the path, so any directory whose name
//! contains "lock" would look locked). A conflict on this lock is an error kind,
//! `EWOULDBLOCK`, so [`Locked`](super::RocksError::Locked) means exactly "someone else holds
//! it". `flock` locks belong to an open file description, so two persisters in one process
//! conflict just as two processes do. The lock is on the directory's inode: it follows the
//! directory through the rename that ends [`create`](super::RocksDbPersister::create).

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use super::error::RocksError;

/// An exclusive lock on a directory, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DirLock {
    _directory: File,
}

impl DirLock {
    /// Locks the directory `path`, or reports [`RocksError::Locked`] if another holder has it.
    pub fn acquire(path: &Path) -> Result<Self, RocksError> {
        let directory = File::open(path)
            .map_err(|e| RocksError::io(path, "open the directory to lock it", e))?;
        match flock(&directory, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Self {
                _directory: directory,
            }),
            Err(errno) => {
                let error = std::io::Error::from(errno);
                if error.kind() == ErrorKind::WouldBlock {
                    Err(RocksError::Locked {
                        path: path.to_path_buf(),
                    })
                } else {
                    Err(RocksError::io(path, "lock the directory", error))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_even_in_one_process() {
        let dir = tempfile::tempdir().unwrap();
        // A name containing "lock" changes nothing: the error kind decides.
        let path = dir.path().join("blocks");
        std::fs::create_dir(&path).unwrap();
        let first = DirLock::acquire(&path).unwrap();
        let error = DirLock::acquire(&path).unwrap_err();
        assert!(matches!(error, RocksError::Locked { .. }), "{error}");
        drop(first);
        DirLock::acquire(&path).unwrap();
        let error = DirLock::acquire(&dir.path().join("absent-blocks")).unwrap_err();
        assert!(matches!(error, RocksError::Io { .. }), "{error}");
    }
}
