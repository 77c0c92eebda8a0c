//! The RocksDB options of a data directory, chosen so that damage to the write-ahead log is
//! refused when the directory is opened instead of being silently cut away.

use rocksdb::{ColumnFamilyDescriptor, DBRecoveryMode, Options};

use super::layout::COLUMN_FAMILIES;

/// Options for opening a data directory (`create`: for initializing a new one).
///
/// - WAL recovery mode `TolerateCorruptedTailRecords`: an incomplete last record (a write
///   torn by a crash, never acknowledged) is dropped; any other damage in a WAL is a
///   corruption error. (RocksDB's default, `PointInTimeRecovery`, stops replaying at the
///   first damaged record and opens with everything after it missing.)
/// - `track_and_verify_wals_in_manifest`: the sizes of closed WALs are recorded in the
///   MANIFEST, so a closed WAL that is missing or cut is refused.
/// - `track_and_verify_wals`: each WAL records its predecessor's size and last sequence
///   number, and a directory with no WAL at all is refused, so a deleted WAL or a hole in the
///   chain of WALs is noticed.
/// - `paranoid_checks`: checksums and file sizes are verified where RocksDB can.
pub fn db(create: bool) -> Result<Options, rocksdb::Error> {
    // The binding has no setter for `track_and_verify_wals`; RocksDB's option parser sets it.
    let mut options = Options::default().get_options_from_string("track_and_verify_wals=true")?;
    options.create_if_missing(create);
    options.create_missing_column_families(create);
    options.set_error_if_exists(create);
    options.set_paranoid_checks(true);
    options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    options.set_track_and_verify_wals_in_manifest(true);
    Ok(options)
}

/// The column families of a data directory.
pub fn descriptors() -> Vec<ColumnFamilyDescriptor> {
    COLUMN_FAMILIES
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()))
        .collect()
}

/// The column families RocksDB lists for a data directory: its default one and ours.
pub fn expected_column_families() -> Vec<String> {
    let mut names: Vec<String> = std::iter::once(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
        .chain(COLUMN_FAMILIES)
        .map(String::from)
        .collect();
    names.sort();
    names
}
