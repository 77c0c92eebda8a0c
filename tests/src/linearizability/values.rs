//! Interned values of one key: every distinct byte string gets a small id, so the model state
//! is a `u32` that is free to copy, hash and compare.
//!
//! A value built by appends is stored as its parent value plus the appended bytes, so a key with
//! many appends costs O(1) memory per distinct value, not O(length). Values are deduplicated by
//! content (a polynomial hash over the bytes, computed incrementally, then a byte comparison),
//! so two ids are equal iff the byte strings are equal, however each was built.

use std::collections::HashMap;

use super::history::MaybeBytes;

/// An interned value: [`ABSENT`] or an index into [`Values`].
pub(super) type ValueId = u32;

/// The id of "no value" (key absent), distinct from the empty value.
pub(super) const ABSENT: ValueId = 0;

/// The id of "some value nobody can have seen": what a write of unknown outcome that no
/// answer reveals leaves in an absent key (see `prepare`). It equals no byte string, and
/// appending to it leaves it as it is.
pub(super) const UNSEEN: ValueId = 1;

/// No next node in a collision chain.
const NONE: u32 = u32::MAX;

/// The Mersenne prime 2^61 - 1, modulus of the content hash.
const MODULUS: u64 = (1 << 61) - 1;
/// The base of the content hash (any number in 256..MODULUS).
const BASE: u64 = 0x1f3d_5b79_a2c4_e6b1 % MODULUS;

fn mul_mod(a: u64, b: u64) -> u64 {
    let x = u128::from(a) * u128::from(b);
    // 2^61 ≡ 1, so fold the high bits onto the low ones (twice is enough below 2^122).
    let folded = (x & u128::from(MODULUS)) + (x >> 61);
    let folded = (folded & u128::from(MODULUS)) + (folded >> 61);
    let r = folded as u64; // < 2^62 after two folds
    if r >= MODULUS {
        r - MODULUS
    } else {
        r
    }
}

fn add_mod(a: u64, b: u64) -> u64 {
    let r = a + b; // both < 2^61, no overflow
    if r >= MODULUS {
        r - MODULUS
    } else {
        r
    }
}

/// Hash and BASE^len of a byte string.
fn hash_bytes(bytes: &[u8]) -> (u64, u64) {
    bytes.iter().fold((0, 1), |(h, pow), &b| {
        (
            add_mod(mul_mod(h, BASE), u64::from(b) + 1),
            mul_mod(pow, BASE),
        )
    })
}

/// Bytes appended by some `Append`.
#[derive(Debug)]
struct Piece {
    bytes: Box<[u8]>,
    /// `BASE^len`, to extend a hash by these bytes.
    pow: u64,
    /// Hash of `bytes` alone.
    hash: u64,
}

/// How a value's bytes are stored.
#[derive(Debug)]
enum Shape {
    Absent,
    Unseen,
    Bytes(Box<[u8]>),
    /// The parent value's bytes followed by a piece's. The parent is never [`ABSENT`].
    Append {
        parent: ValueId,
        piece: u32,
    },
}

#[derive(Debug)]
struct Node {
    shape: Shape,
    len: usize,
    hash: u64,
    /// The next node with the same `(hash, len)`.
    next_same: u32,
}

/// The values of one key.
#[derive(Debug)]
pub(super) struct Values {
    nodes: Vec<Node>,
    pieces: Vec<Piece>,
    by_content: HashMap<(u64, usize), u32>,
    /// `(value, piece) -> value` after the append, computed once each.
    appended: HashMap<(ValueId, u32), ValueId>,
}

impl Values {
    pub(super) fn new() -> Values {
        Values {
            // Neither is indexed by content, so no byte string is ever found equal to them.
            nodes: vec![
                Node {
                    shape: Shape::Absent,
                    len: 0,
                    hash: 0,
                    next_same: NONE,
                },
                Node {
                    shape: Shape::Unseen,
                    len: 0,
                    hash: 0,
                    next_same: NONE,
                },
            ],
            pieces: Vec::new(),
            by_content: HashMap::new(),
            appended: HashMap::new(),
        }
    }

    /// How many distinct values are stored (the absent one included).
    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The id of `value`.
    pub(super) fn intern(&mut self, value: Option<&[u8]>) -> ValueId {
        let Some(bytes) = value else {
            return ABSENT;
        };
        let (hash, _) = hash_bytes(bytes);
        let found = self.find(hash, bytes.len(), |values, id| {
            values.bytes_rev(id).eq(bytes.iter().rev().copied())
        });
        found.unwrap_or_else(|| {
            self.insert(Node {
                shape: Shape::Bytes(bytes.into()),
                len: bytes.len(),
                hash,
                next_same: NONE,
            })
        })
    }

    /// Registers bytes that an `Append` adds; returns the piece's index for [`Values::append`].
    pub(super) fn piece(&mut self, bytes: &[u8]) -> u32 {
        let (hash, pow) = hash_bytes(bytes);
        self.pieces.push(Piece {
            bytes: bytes.into(),
            pow,
            hash,
        });
        to_u32(self.pieces.len() - 1)
    }

    /// The value after appending `piece` to `value` (to an absent value: the piece alone).
    pub(super) fn append(&mut self, value: ValueId, piece: u32) -> ValueId {
        if let Some(&done) = self.appended.get(&(value, piece)) {
            return done;
        }
        let result = self.compute_append(value, piece);
        self.appended.insert((value, piece), result);
        result
    }

    fn compute_append(&mut self, value: ValueId, piece: u32) -> ValueId {
        let p = &self.pieces[piece as usize];
        if value == UNSEEN {
            return UNSEEN;
        }
        if value == ABSENT {
            let bytes = p.bytes.clone();
            return self.intern(Some(&bytes));
        }
        let parent = &self.nodes[value as usize];
        let len = parent.len + p.bytes.len();
        let hash = add_mod(mul_mod(parent.hash, p.pow), p.hash);
        let found = self.find(hash, len, |values, id| {
            let pb = &values.pieces[piece as usize].bytes;
            values
                .bytes_rev(id)
                .eq(pb.iter().rev().copied().chain(values.bytes_rev(value)))
        });
        found.unwrap_or_else(|| {
            self.insert(Node {
                shape: Shape::Append {
                    parent: value,
                    piece,
                },
                len,
                hash,
                next_same: NONE,
            })
        })
    }

    fn find(
        &self,
        hash: u64,
        len: usize,
        same: impl Fn(&Values, ValueId) -> bool,
    ) -> Option<ValueId> {
        let mut id = *self.by_content.get(&(hash, len))?;
        while id != NONE {
            if same(self, id) {
                return Some(id);
            }
            id = self.nodes[id as usize].next_same;
        }
        None
    }

    fn insert(&mut self, mut node: Node) -> ValueId {
        let id = to_u32(self.nodes.len());
        let key = (node.hash, node.len);
        node.next_same = self.by_content.insert(key, id).unwrap_or(NONE);
        self.nodes.push(node);
        id
    }

    /// The bytes of `id`, last byte first (empty for [`ABSENT`]).
    fn bytes_rev(&self, id: ValueId) -> impl Iterator<Item = u8> + '_ {
        std::iter::successors(Some(id), move |&n| match self.nodes[n as usize].shape {
            Shape::Append { parent, .. } => Some(parent),
            Shape::Absent | Shape::Unseen | Shape::Bytes(_) => None,
        })
        .flat_map(move |n| {
            let segment: &[u8] = match &self.nodes[n as usize].shape {
                Shape::Absent | Shape::Unseen => &[],
                Shape::Bytes(b) => b,
                Shape::Append { piece, .. } => &self.pieces[*piece as usize].bytes,
            };
            segment.iter().rev().copied()
        })
    }

    /// Whether value `id` is present and ends with the bytes of `piece` (so that appending
    /// `piece` could have produced it).
    pub(super) fn ends_with(&self, id: ValueId, piece: u32) -> bool {
        let p = &self.pieces[piece as usize].bytes;
        id != ABSENT
            && id != UNSEEN
            && self.nodes[id as usize].len >= p.len()
            && self.bytes_rev(id).zip(p.iter().rev()).all(|(a, &b)| a == b)
    }

    /// The value `id` stands for, for messages.
    pub(super) fn show(&self, id: ValueId) -> String {
        match id {
            UNSEEN => "a value nobody saw".to_string(),
            _ => MaybeBytes(self.get(id).as_deref()).to_string(),
        }
    }

    /// The value `id` stands for ([`UNSEEN`] shows as empty: use [`Values::show`] for it).
    pub(super) fn get(&self, id: ValueId) -> Option<Vec<u8>> {
        if id == ABSENT {
            return None;
        }
        let mut bytes: Vec<u8> = self.bytes_rev(id).collect();
        bytes.reverse();
        Some(bytes)
    }
}

/// Converts an index to `u32`. One key's operations and values stay far below 2^32 (each needs
/// memory), so this never truncates in practice; if it ever did, ids would collide and the
/// checker would only lose precision, so it saturates rather than panic.
pub(super) fn to_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bytes_get_equal_ids_however_built() {
        let mut v = Values::new();
        let a = v.piece(b"a");
        let bc = v.piece(b"bc");
        let empty = v.piece(b"");
        let from_appends = v.append(ABSENT, a);
        let from_appends = v.append(from_appends, bc);
        assert_eq!(v.intern(Some(b"abc")), from_appends);
        let abc = v.intern(Some(b"abc"));
        assert_eq!(v.append(abc, empty), abc);
        assert_eq!(v.get(abc), Some(b"abc".to_vec()));
        // "ab" + "c" is the same value as "a" + "bc".
        let ab = v.intern(Some(b"ab"));
        let c = v.piece(b"c");
        assert_eq!(v.append(ab, c), abc);
        assert_ne!(v.intern(Some(b"")), ABSENT, "empty is not absent");
        assert_ne!(v.intern(Some(b"abd")), abc);
        assert_eq!(v.get(ABSENT), None);
        assert!(v.ends_with(abc, c) && v.ends_with(abc, bc) && v.ends_with(abc, empty));
        assert!(!v.ends_with(ab, c) && !v.ends_with(ABSENT, empty));
        let long = v.piece(b"xabc");
        assert!(!v.ends_with(abc, long));
    }

    #[test]
    fn the_unseen_value_equals_no_bytes_and_absorbs_appends() {
        let mut v = Values::new();
        let empty = v.intern(Some(b""));
        assert!(empty != UNSEEN && empty != ABSENT);
        let a = v.piece(b"a");
        assert_eq!(v.append(UNSEEN, a), UNSEEN);
        assert!(!v.ends_with(UNSEEN, a));
        assert_eq!(v.show(UNSEEN), "a value nobody saw");
        assert_eq!(v.show(ABSENT), "absent");
        assert_eq!(v.show(empty), "\"\"");
    }

    #[test]
    fn colliding_hashes_are_told_apart_by_bytes() {
        let mut v = Values::new();
        let x = v.intern(Some(b"x"));
        // Force a collision: a node with x's hash and length but other bytes.
        let fake = v.insert(Node {
            shape: Shape::Bytes(b"y".as_slice().into()),
            len: 1,
            hash: v.nodes[x as usize].hash,
            next_same: NONE,
        });
        assert_ne!(fake, x);
        // The chain for x's (hash, len) now starts with the impostor; the bytes decide.
        assert_eq!(v.intern(Some(b"x")), x);
    }

    #[test]
    fn modular_arithmetic() {
        assert_eq!(mul_mod(MODULUS - 1, MODULUS - 1), 1);
        assert_eq!(add_mod(MODULUS - 1, 1), 0);
        assert_eq!(hash_bytes(b"").1, 1);
    }
}
