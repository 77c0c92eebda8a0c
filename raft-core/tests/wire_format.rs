//! The encoding of byte payloads: they are serialized as byte strings (`serde_bytes`, one copy)
//! rather than as sequences of `u8` (one call per byte), and postcard writes both the same way,
//! so data written before the change (RocksDB logs, snapshots, messages in flight during a
//! rolling upgrade) still decodes, and new data decodes in old code.

use proptest::prelude::*;
use raft_core::{Entry, Payload};
use serde::{Deserialize, Serialize};

/// `Payload` as it was declared before byte strings: `Vec<u8>` as a sequence.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum SeqPayload {
    Noop,
    Command(Vec<u8>),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct SeqEntry {
    index: u64,
    term: u64,
    payload: SeqPayload,
}

proptest! {
    #[test]
    fn byte_payloads_encode_exactly_as_sequences_did(
        index in any::<u64>(),
        term in any::<u64>(),
        command in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let entry = Entry { index, term, payload: Payload::Command(command.clone()) };
        let old = SeqEntry { index, term, payload: SeqPayload::Command(command) };
        let new_bytes = postcard::to_allocvec(&entry).unwrap();
        let old_bytes = postcard::to_allocvec(&old).unwrap();
        prop_assert_eq!(&new_bytes, &old_bytes);
        prop_assert_eq!(postcard::from_bytes::<Entry>(&old_bytes).unwrap(), entry);
        prop_assert_eq!(postcard::from_bytes::<SeqEntry>(&new_bytes).unwrap(), old);
    }
}
