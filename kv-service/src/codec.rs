//! The one codec for everything the service encodes: client requests and replies, log commands
//! and snapshots.
//!
//! Every encoding is a two-byte header, `[kind, version]`, followed by the postcard encoding of
//! the value. The kind tells the four families apart (a reply is never mistaken for a request);
//! the version is [`PROTOCOL_VERSION`], bumped whenever an encoding changes, so that bytes
//! written by another version are refused with [`CodecError::UnsupportedVersion`] instead of
//! being misread. Postcard encodes `BTreeMap`s in key order and has no hash-map or padding
//! freedom, so equal values always encode to equal bytes.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::protocol::{ClientRequest, Reply};

/// The version of every encoding in this crate. Bump it on any change to an encoded type.
pub const PROTOCOL_VERSION: u8 = 1;

/// Length of the header in front of every encoding.
pub const HEADER_LEN: usize = 2;

/// Which family an encoding belongs to (the first header byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Kind {
    /// A [`ClientRequest`].
    Request = 1,
    /// A [`Reply`].
    Reply = 2,
    /// A log command ([`LogCommand`](crate::command::LogCommand)).
    Command = 3,
    /// A state machine snapshot ([`KvStateMachine::snapshot`](crate::KvStateMachine::snapshot)).
    Snapshot = 4,
}

/// A value with its own kind of encoding.
pub trait Wire: Serialize + DeserializeOwned {
    /// The kind written in the header.
    const KIND: Kind;
}

impl Wire for ClientRequest {
    const KIND: Kind = Kind::Request;
}

impl Wire for Reply {
    const KIND: Kind = Kind::Reply;
}

/// Why bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CodecError {
    /// Fewer bytes than the header.
    #[error("truncated: {len} bytes, shorter than the header")]
    Truncated {
        /// How many bytes there were.
        len: usize,
    },
    /// The bytes encode another kind of value.
    #[error("wrong kind of encoding: expected {expected}, found {found}")]
    WrongKind {
        /// The kind asked for.
        expected: u8,
        /// The kind in the header.
        found: u8,
    },
    /// The bytes were written by another version of the protocol.
    #[error("unsupported protocol version {found} (this build speaks {supported})")]
    UnsupportedVersion {
        /// The version in the header.
        found: u8,
        /// [`PROTOCOL_VERSION`].
        supported: u8,
    },
    /// The body is not a valid encoding of the value.
    #[error("malformed body: {reason}")]
    Malformed {
        /// The decoder's explanation.
        reason: String,
    },
}

/// Encodes `value` as `T::KIND`.
pub fn encode<T: Wire>(value: &T) -> Vec<u8> {
    encode_as(T::KIND, value)
}

/// Decodes a `T` from bytes produced by [`encode`], refusing another kind, another version,
/// malformed bodies and trailing bytes.
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_as(T::KIND, bytes)
}

/// Encodes any serializable value under `kind` (for values whose encoding side borrows, such as
/// snapshots).
pub(crate) fn encode_as<T: Serialize + ?Sized>(kind: Kind, value: &T) -> Vec<u8> {
    let mut bytes = vec![kind as u8, PROTOCOL_VERSION];
    // Invariant: postcard's serializer into a growable Vec fails only for sequences of unknown
    // length or a failing `Serialize` impl; every type encoded here is a derived struct or enum
    // over integers, byte vectors, options, results and BTreeMaps, all of known length.
    let body = postcard::to_allocvec(value).expect("postcard encodes the service's plain types");
    bytes.extend_from_slice(&body);
    bytes
}

/// Decodes a value encoded with [`encode_as`] under `kind`.
pub(crate) fn decode_as<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T, CodecError> {
    let [found_kind, version, body @ ..] = bytes else {
        return Err(CodecError::Truncated { len: bytes.len() });
    };
    if *found_kind != kind as u8 {
        return Err(CodecError::WrongKind {
            expected: kind as u8,
            found: *found_kind,
        });
    }
    if *version != PROTOCOL_VERSION {
        return Err(CodecError::UnsupportedVersion {
            found: *version,
            supported: PROTOCOL_VERSION,
        });
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| CodecError::Malformed {
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(CodecError::Malformed {
            reason: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{KvError, Response, WriteOp};

    fn request() -> ClientRequest {
        ClientRequest::Write {
            session: 7,
            seq: 3,
            lowest_unacked: 2,
            op: WriteOp::Append {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&request());
        assert_eq!(
            &bytes[..HEADER_LEN],
            &[Kind::Request as u8, PROTOCOL_VERSION]
        );
        assert_eq!(decode::<ClientRequest>(&bytes), Ok(request()));
        let replies: Vec<Reply> = vec![
            Ok(Response::Value(None)),
            Ok(Response::Value(Some(Vec::new()))),
            Err(KvError::NotLeader {
                leader_hint: Some(2),
            }),
        ];
        for reply in replies {
            assert_eq!(decode::<Reply>(&encode(&reply)), Ok(reply));
        }
    }

    #[test]
    fn another_version_is_refused() {
        let mut bytes = encode(&request());
        bytes[1] = PROTOCOL_VERSION + 1;
        assert_eq!(
            decode::<ClientRequest>(&bytes),
            Err(CodecError::UnsupportedVersion {
                found: PROTOCOL_VERSION + 1,
                supported: PROTOCOL_VERSION
            })
        );
        bytes[1] = PROTOCOL_VERSION - 1;
        assert!(matches!(
            decode::<ClientRequest>(&bytes),
            Err(CodecError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn another_kind_truncation_and_garbage_are_refused() {
        let bytes = encode(&request());
        assert_eq!(
            decode::<Reply>(&bytes),
            Err(CodecError::WrongKind {
                expected: Kind::Reply as u8,
                found: Kind::Request as u8
            })
        );
        assert_eq!(
            decode::<ClientRequest>(&bytes[..1]),
            Err(CodecError::Truncated { len: 1 })
        );
        assert!(matches!(
            decode::<ClientRequest>(&bytes[..bytes.len() - 1]),
            Err(CodecError::Malformed { .. })
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            decode::<ClientRequest>(&trailing),
            Err(CodecError::Malformed { .. })
        ));
        let mut garbage = vec![Kind::Request as u8, PROTOCOL_VERSION];
        garbage.extend_from_slice(&[0xff; 16]);
        assert!(matches!(
            decode::<ClientRequest>(&garbage),
            Err(CodecError::Malformed { .. })
        ));
    }

    proptest::proptest! {
        /// Decoding arbitrary bytes never panics.
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode::<ClientRequest>(&bytes);
            let _ = decode::<Reply>(&bytes);
        }
    }
}
