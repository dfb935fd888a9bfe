//! Framing: a 4-byte big-endian length, then that many bytes of JSON (at most [`MAX_FRAME`]).
//!
//! Decoding tells apart a frame that is not JSON, a JSON message of a type this side does not
//! know (a newer peer), and a frame over the size limit.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::LengthDelimitedCodec;

/// The largest frame body either side accepts.
pub const MAX_FRAME: usize = 1024 * 1024;

/// The codec both sides use: u32 big-endian length prefix, [`MAX_FRAME`] limit.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// A frame that could not be turned into a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is not valid JSON: {0}")]
    NotJson(String),
    #[error("message type {0:?} is not known to this side (is the peer a newer version?)")]
    UnknownType(String),
    #[error("message is malformed: {0}")]
    Malformed(String),
}

/// Encodes a message as a frame body.
pub fn encode<T: Serialize>(msg: &T) -> Bytes {
    // Our message types serialize without fallible parts (no non-string map keys).
    Bytes::from(serde_json::to_vec(msg).unwrap_or_default())
}

/// Decodes a frame body, telling a corrupt frame from an unknown message type.
pub fn decode<T: DeserializeOwned>(body: &[u8], known_types: &[&str]) -> Result<T, FrameError> {
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Ok(v),
        Err(e) => {
            let value: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| FrameError::NotJson(e.to_string()))?;
            match value.get("type").and_then(|t| t.as_str()) {
                Some(t) if !known_types.contains(&t) => Err(FrameError::UnknownType(t.into())),
                _ => Err(FrameError::Malformed(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Request, REQUEST_TYPES};
    use bytes::{BufMut, BytesMut};
    use tokio_util::codec::{Decoder, Encoder};

    #[test]
    fn frames_round_trip_with_a_big_endian_length() {
        let mut codec = codec();
        let mut buf = BytesMut::new();
        codec.encode(Bytes::from_static(b"{}"), &mut buf).unwrap();
        assert_eq!(&buf[..], b"\x00\x00\x00\x02{}");
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"{}");
    }

    #[test]
    fn an_oversized_length_is_an_error_not_an_allocation() {
        let mut codec = codec();
        let mut buf = BytesMut::new();
        buf.put_u32(u32::MAX);
        buf.put_slice(b"xx");
        assert!(codec.decode(&mut buf).is_err());
    }

    #[test]
    fn a_half_frame_waits_for_more() {
        let mut codec = codec();
        let mut buf = BytesMut::new();
        buf.put_u32(10);
        buf.put_slice(b"{\"a\"");
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn decode_tells_garbage_from_newer_messages() {
        assert!(matches!(
            decode::<Request>(b"\xff\x00garbage", REQUEST_TYPES),
            Err(FrameError::NotJson(_))
        ));
        assert_eq!(
            decode::<Request>(br#"{"type":"teleport"}"#, REQUEST_TYPES).unwrap_err(),
            FrameError::UnknownType("teleport".into())
        );
        assert!(matches!(
            decode::<Request>(br#"{"type":"emit","event":5}"#, REQUEST_TYPES),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Request>(br#"{"type":"info"}"#, REQUEST_TYPES),
            Ok(Request::Info)
        ));
    }
}
