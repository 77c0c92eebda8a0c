//! Framing: every frame is a 4-byte big-endian length followed by that many bytes of postcard.
//!
//! Frames longer than the configured maximum are refused before anything is allocated for
//! them, and a frame's buffer grows with the bytes that actually arrive (at most twice them),
//! never with what its header announces: a sender cannot make a node reserve memory it does
//! not fill.

use raft_core::{Message, NodeId};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Bytes of the length prefix.
pub const HEADER_BYTES: usize = 4;

/// What travels on a peer stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerFrame {
    /// First frame of every stream: who is sending. It must match the connection's certificate.
    Hello {
        /// The sender's node id.
        node_id: NodeId,
    },
    /// A Raft message.
    Message(Message),
}

/// A frame that cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame's length exceeds the limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The bytes are not a valid value (unknown message type, bad field).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// Reading or writing the stream failed.
    #[error("stream error: {0}")]
    Stream(String),
}

/// Encodes `value` as one frame of at most `max` payload bytes.
pub fn encode<T: Serialize>(value: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut frame = postcard::to_extend(value, vec![0u8; HEADER_BYTES])
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = frame.len() - HEADER_BYTES;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    // len <= max, and max is a frame limit far below 4 GiB; a larger one is clamped below.
    let prefix = u32::try_from(len).map_err(|_| FrameError::TooLarge { len, max })?;
    frame[..HEADER_BYTES].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

/// Decodes one frame from the start of `bytes`: the value and the bytes it used.
/// `Err(Truncated)` means more bytes are needed.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<(T, usize), FrameError> {
    let header: [u8; HEADER_BYTES] = bytes
        .get(..HEADER_BYTES)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated)?;
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let payload = bytes
        .get(HEADER_BYTES..HEADER_BYTES + len)
        .ok_or(FrameError::Truncated)?;
    let value = decode_payload(payload)?;
    Ok((value, HEADER_BYTES + len))
}

/// Decodes a frame's payload, which must be exactly one value.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (value, rest) =
        postcard::take_from_bytes(payload).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} bytes after the value",
            rest.len()
        )));
    }
    Ok(value)
}

/// Reads one frame from a QUIC stream. `Ok(None)` when the stream ended cleanly between
/// frames.
pub async fn read<T: DeserializeOwned>(
    stream: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<T>, FrameError> {
    match read_payload(stream, max).await? {
        Some(payload) => decode_payload(&payload).map(Some),
        None => Ok(None),
    }
}

/// Reads one frame's payload bytes from a QUIC stream, refusing (before allocating) a length
/// over `max`. `Ok(None)` when the stream ended cleanly between frames.
pub async fn read_payload(
    stream: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    match read_len(stream, max).await? {
        Some(len) => read_body(stream, len, |_| {}).await.map(Some),
        None => Ok(None),
    }
}

/// Reads a frame's length prefix and checks it against `max`. `Ok(None)` when the stream ended
/// cleanly before it.
pub(crate) async fn read_len(
    stream: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<usize>, FrameError> {
    let mut header = [0u8; HEADER_BYTES];
    match stream.read_exact(&mut header).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(read_error(e)),
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(Some(len))
}

/// The first buffer of a payload; it then doubles as bytes fill it.
const FIRST_BUFFER: usize = 4096;

/// Reads a payload of `len` bytes into a buffer that grows as the bytes arrive: never more
/// than twice the bytes received (or [`FIRST_BUFFER`]). `grew` is told each new capacity.
pub(crate) async fn read_body(
    stream: &mut quinn::RecvStream,
    len: usize,
    mut grew: impl FnMut(usize),
) -> Result<Vec<u8>, FrameError> {
    let mut payload = Vec::new();
    let mut capacity = 0;
    while payload.len() < len {
        if payload.len() >= capacity {
            capacity = (capacity * 2).max(FIRST_BUFFER).min(len);
            payload.reserve_exact(capacity - payload.len());
            grew(capacity);
        }
        match stream.read_chunk(capacity - payload.len(), true).await {
            Ok(Some(chunk)) => payload.extend_from_slice(&chunk.bytes),
            Ok(None) => return Err(FrameError::Truncated),
            Err(e) => return Err(FrameError::Stream(e.to_string())),
        }
    }
    Ok(payload)
}

fn read_error(error: quinn::ReadExactError) -> FrameError {
    match error {
        quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
        quinn::ReadExactError::ReadError(e) => FrameError::Stream(e.to_string()),
    }
}

/// Frames raw payload bytes (no postcard encoding), refusing more than `max`.
pub fn frame_bytes(payload: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let len = payload.len();
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let prefix = u32::try_from(len).map_err(|_| FrameError::TooLarge { len, max })?;
    let mut frame = Vec::with_capacity(HEADER_BYTES + len);
    frame.extend_from_slice(&prefix.to_be_bytes());
    frame.extend_from_slice(payload);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft_core::MessageBody;

    fn heartbeat() -> PeerFrame {
        PeerFrame::Message(Message {
            from: 1,
            to: 2,
            term: 3,
            body: MessageBody::VoteResponse { granted: true },
        })
    }

    #[test]
    fn round_trip_and_limits() {
        let frame = encode(&heartbeat(), 1024).unwrap();
        let (value, used): (PeerFrame, usize) = decode(&frame, 1024).unwrap();
        assert_eq!((value, used), (heartbeat(), frame.len()));
        assert!(matches!(
            encode(&heartbeat(), 2),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            decode::<PeerFrame>(&frame, 2),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(
            decode::<PeerFrame>(&frame[..frame.len() - 1], 1024),
            Err(FrameError::Truncated)
        );
        // An unknown message type.
        assert!(matches!(
            decode::<PeerFrame>(&[0, 0, 0, 1, 0x7F], 1024),
            Err(FrameError::Malformed(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_payload_buffer_grows_with_the_bytes_received_not_the_announced_length() {
        use crate::{pki::ClusterCa, tls};
        let ca = ClusterCa::generate("t").unwrap();
        let server_config = tls::server_config(&ca.issue_node(1).unwrap()).unwrap();
        let server = quinn::Endpoint::server(server_config, ([127, 0, 0, 1], 0).into()).unwrap();
        let mut client = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
        client
            .set_default_client_config(tls::client_config(&ca.issue_client("c").unwrap()).unwrap());
        let addr = server.local_addr().unwrap();
        let (sending, receiving) = tokio::join!(
            async { client.connect(addr, crate::pki::SERVER_NAME).unwrap().await },
            async { server.accept().await.unwrap().await }
        );
        let (sending, receiving) = (sending.unwrap(), receiving.unwrap());
        receiving.set_max_concurrent_uni_streams(1u32.into());
        // Announces 1 MiB, sends 10 kB.
        let len = 1 << 20;
        let mut stream = sending.open_uni().await.unwrap();
        stream.write_all(&(len as u32).to_be_bytes()).await.unwrap();
        stream.write_all(&[5; 10_000]).await.unwrap();
        let grown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorder = std::sync::Arc::clone(&grown);
        let capacities = move || grown.lock().unwrap().clone();
        let mut incoming = receiving.accept_uni().await.unwrap();
        let read = tokio::spawn(async move {
            let announced = read_len(&mut incoming, 2 << 20).await.unwrap().unwrap();
            assert_eq!(announced, len);
            read_body(&mut incoming, announced, |capacity| {
                recorder.lock().unwrap().push(capacity)
            })
            .await
        });
        for _ in 0..500 {
            if capacities().last() == Some(&16384) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(capacities(), vec![4096, 8192, 16384]);
        assert!(!read.is_finished());
        // The rest arrives: the buffer doubles up to the payload's length, never beyond.
        stream.write_all(&vec![5; len - 10_000]).await.unwrap();
        stream.finish().unwrap();
        let payload = read.await.unwrap().unwrap();
        assert_eq!(payload, vec![5; len]);
        assert_eq!(payload.capacity(), len);
        let grown = capacities();
        assert_eq!(grown.len(), 9, "{grown:?}");
        assert!(grown.windows(2).all(|w| w[1] == 2 * w[0]), "{grown:?}");
    }

    proptest! {
        /// Arbitrary bytes never make the decoder panic, and it never claims more bytes than
        /// it was given.
        #[test]
        fn decoder_survives_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok((_, used)) = decode::<PeerFrame>(&bytes, 256) {
                prop_assert!(used <= bytes.len());
            }
        }

        /// A valid frame with its bytes flipped or cut never panics the decoder either.
        #[test]
        fn decoder_survives_damaged_frames(
            term in any::<u64>(),
            flip in any::<usize>(),
            mask in 1u8..,
            cut in any::<usize>(),
        ) {
            let mut frame = encode(&PeerFrame::Message(Message {
                from: 1, to: 2, term,
                body: MessageBody::PreVoteRequest { last_log_index: term / 3, last_log_term: term / 7 },
            }), 1024).unwrap();
            let k = flip % frame.len();
            frame[k] ^= mask;
            frame.truncate(cut % (frame.len() + 1));
            let _ = decode::<PeerFrame>(&frame, 1024);
        }
    }
}
