//! The RocksDB options of a data directory.

use rocksdb::{ColumnFamilyDescriptor, Options};

use super::layout::COLUMN_FAMILIES;

/// Options for opening a data directory (`create`: for initializing a new one).
pub fn db(create: bool) -> Options {
    let mut options = Options::default();
    options.create_if_missing(create);
    options.create_missing_column_families(create);
    options.set_error_if_exists(create);
    options.set_paranoid_checks(true);
    options
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
