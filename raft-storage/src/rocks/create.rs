//! Initializing a data directory, atomically.
//!
//! The new database is built in a hidden sibling of the target (`.<name>.creating-XXXXXX`),
//! made durable (every file in it and the directory itself fsynced), and renamed into place;
//! the parent directory is fsynced after the rename. A crash at any moment therefore leaves
//! either no data directory (the target still absent, or still the empty directory it was) or a
//! complete one. At worst a hidden sibling is left behind, which nothing reads and an operator
//! may delete.
//!
//! The target must be absent or an empty directory: `create` never deletes, overwrites or
//! writes into anything that is already there. (Renaming over an empty directory replaces it,
//! keeping its permissions; a target that is a mount point cannot be replaced, so the data
//! directory must be a directory *inside* a mounted volume.)

use std::fs::{self, File, Permissions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use rocksdb::{WriteBatch, WriteOptions, DB};

use super::error::RocksError;
use super::layout::{self, HardStateRecord, IdentityRecord, StorageIdentity, FORMAT_VERSION};
use super::lock::DirLock;
use super::{holds_database, options, reader};

/// Where the new data directory goes: `path` as given, or the directory it resolves to.
struct Target {
    path: PathBuf,
    /// The permissions of the empty directory being replaced, if there is one.
    permissions: Option<Permissions>,
}

/// Builds a new data directory for `identity` at `path`, and returns the lock on it (held
/// since before the directory appeared at `path`).
pub fn build(path: &Path, identity: StorageIdentity) -> Result<DirLock, RocksError> {
    let target = check_target(path)?;
    let name = target
        .path
        .file_name()
        .ok_or_else(|| {
            RocksError::io(
                path,
                "name the data directory",
                std::io::Error::new(ErrorKind::InvalidInput, "the path has no final component"),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let parent = match target.path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)
        .map_err(|e| RocksError::io(path, "create the parent directory", e))?;
    // Removed again if anything below fails; kept (as the data directory) if all succeeds.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.creating-"))
        .tempdir_in(&parent)
        .map_err(|e| RocksError::io(path, "create a staging directory", e))?;
    if let Some(permissions) = target.permissions {
        fs::set_permissions(staging.path(), permissions)
            .map_err(|e| RocksError::io(path, "set the new directory's permissions", e))?;
    }
    let lock = DirLock::acquire(staging.path())?;
    initialize(staging.path(), path, identity)?;
    sync_tree(staging.path(), path)?;
    if let Err(e) = fs::rename(staging.path(), &target.path) {
        // Something appeared at the target meanwhile: report what, as `check_target` would.
        check_target(path)?;
        return Err(RocksError::io(
            path,
            "rename the new directory into place",
            e,
        ));
    }
    // The staging path no longer exists; nothing is left to remove.
    let _ = staging.keep();
    sync_directory(&parent, path)?;
    Ok(lock)
}

/// Checks that `path` is absent or an empty directory.
fn check_target(path: &Path) -> Result<Target, RocksError> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(Target {
                path: path.to_path_buf(),
                permissions: None,
            })
        }
        Err(e) => return Err(RocksError::io(path, "inspect the path", e)),
    };
    if !metadata.is_dir() {
        return Err(RocksError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    if holds_database(path) {
        return Err(RocksError::AlreadyInitialized {
            path: path.to_path_buf(),
        });
    }
    let mut entries =
        fs::read_dir(path).map_err(|e| RocksError::io(path, "list the directory", e))?;
    if let Some(entry) = entries.next() {
        let entry = entry.map_err(|e| RocksError::io(path, "list the directory", e))?;
        return Err(RocksError::NotEmpty {
            path: path.to_path_buf(),
            found: entry.file_name().to_string_lossy().into_owned(),
        });
    }
    // Renaming onto a symbolic link would replace the link, not the directory it names.
    let resolved =
        fs::canonicalize(path).map_err(|e| RocksError::io(path, "resolve the path", e))?;
    Ok(Target {
        path: resolved,
        permissions: Some(metadata.permissions()),
    })
}

/// Creates the database in `staging` with its identity record and an empty state, durably,
/// and closes it. Errors name `path`, the directory being created.
fn initialize(staging: &Path, path: &Path, identity: StorageIdentity) -> Result<(), RocksError> {
    let options = options::db(true).map_err(|e| RocksError::from_db(path, e))?;
    let db = DB::open_cf_descriptors(&options, staging, options::descriptors())
        .map_err(|e| RocksError::from_db(path, e))?;
    let meta = reader::cf(&db, path, layout::CF_META)?;
    let mut batch = WriteBatch::default();
    let record = IdentityRecord {
        format: FORMAT_VERSION,
        identity,
    };
    batch.put_cf(meta, layout::KEY_IDENTITY, layout::encode(&record));
    batch.put_cf(
        meta,
        layout::KEY_HARD_STATE,
        layout::encode(&HardStateRecord::default()),
    );
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync)
        .map_err(|e| RocksError::from_db(path, e))
}

/// Fsyncs every file in `dir`, then `dir` itself.
fn sync_tree(dir: &Path, path: &Path) -> Result<(), RocksError> {
    let entries =
        fs::read_dir(dir).map_err(|e| RocksError::io(path, "list the new directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| RocksError::io(path, "list the new directory", e))?;
        let kind = entry
            .file_type()
            .map_err(|e| RocksError::io(path, "inspect a new file", e))?;
        if kind.is_file() {
            File::open(entry.path())
                .and_then(|file| file.sync_all())
                .map_err(|e| RocksError::io(path, "sync a new file", e))?;
        }
    }
    sync_directory(dir, path)
}

/// Fsyncs the directory `dir` (its list of entries).
fn sync_directory(dir: &Path, path: &Path) -> Result<(), RocksError> {
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(|e| RocksError::io(path, "sync a directory", e))
}
