//! A minimal MQTT 3.1.1 client over tokio TCP, with only the packets the bench needs.
//!
//! The bench drives both brokers with this client rather than `rumqttc` so that the client is
//! never the bottleneck: publishers encode whole batches into one buffer and write them with a
//! single syscall, and the subscriber parses frames in place from its read buffer. Nothing here
//! is broker specific, so both brokers see byte-identical traffic.
//!
//! Supported: CONNECT (clean session, keep-alive off), CONNACK, SUBSCRIBE (one filter), SUBACK,
//! PUBLISH (QoS 0 and 1), PUBACK, DISCONNECT.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::ClientError;

/// Packet type of CONNACK (upper nibble of the first byte).
pub(crate) const CONNACK: u8 = 2;
/// Packet type of PUBLISH.
pub(crate) const PUBLISH: u8 = 3;
/// Packet type of PUBACK.
pub(crate) const PUBACK: u8 = 4;
/// Packet type of SUBACK.
pub(crate) const SUBACK: u8 = 9;

/// Largest remaining length MQTT can encode (four length bytes).
const MAX_REMAINING_LENGTH: usize = 268_435_455;
/// How much free space the reader asks for before each `read`.
const READ_CHUNK: usize = 64 * 1024;

/// Appends the MQTT variable-length encoding of `len` to `out`.
pub(crate) fn encode_remaining_length(mut len: usize, out: &mut Vec<u8>) {
    loop {
        // The mask keeps the value below 128, so the cast cannot truncate.
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

/// Appends a length-prefixed MQTT string. Bench topics and ids are short literals.
fn encode_str(text: &str, out: &mut Vec<u8>) {
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&text.as_bytes()[..usize::from(len)]);
}

/// Appends a CONNECT packet: MQTT 3.1.1, clean session, keep-alive disabled.
pub(crate) fn encode_connect(client_id: &str, out: &mut Vec<u8>) {
    out.push(0x10);
    encode_remaining_length(10 + 2 + client_id.len(), out);
    encode_str("MQTT", out);
    out.push(4); // protocol level 3.1.1
    out.push(0x02); // clean session
    out.extend_from_slice(&0u16.to_be_bytes()); // keep-alive off: idle connections stay idle
    encode_str(client_id, out);
}

/// Appends a SUBSCRIBE packet for one filter.
pub(crate) fn encode_subscribe(packet_id: u16, filter: &str, qos: u8, out: &mut Vec<u8>) {
    out.push(0x82);
    encode_remaining_length(2 + 2 + filter.len() + 1, out);
    out.extend_from_slice(&packet_id.to_be_bytes());
    encode_str(filter, out);
    out.push(qos);
}

/// Appends a PUBLISH packet; `packet_id` is only written for QoS 1.
pub(crate) fn encode_publish(
    topic: &str,
    qos: u8,
    packet_id: u16,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    out.push(0x30 | (qos << 1));
    let id_len = if qos > 0 { 2 } else { 0 };
    encode_remaining_length(2 + topic.len() + id_len + payload.len(), out);
    encode_str(topic, out);
    if qos > 0 {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a PUBACK packet.
pub(crate) fn encode_puback(packet_id: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x40, 0x02]);
    out.extend_from_slice(&packet_id.to_be_bytes());
}

/// One complete packet, borrowed from the reader's buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    /// Packet type (upper nibble of the first byte).
    pub(crate) kind: u8,
    /// Flags (lower nibble of the first byte).
    pub(crate) flags: u8,
    /// Everything after the fixed header.
    pub(crate) body: &'a [u8],
}

/// Where the next complete packet lies in `buf`: `(first byte, body start, body end)`, or
/// `None` when more bytes are needed.
pub(crate) fn frame_bounds(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, ClientError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut shift = 0u32;
    for (idx, &byte) in buf.iter().enumerate().skip(1).take(4) {
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let start = idx + 1;
            let end = start + len;
            return Ok((buf.len() >= end).then_some((first, start, end)));
        }
        shift += 7;
    }
    if buf.len() >= 5 {
        return Err(ClientError::Protocol(format!(
            "remaining length longer than 4 bytes (max {MAX_REMAINING_LENGTH})"
        )));
    }
    Ok(None)
}

/// A received PUBLISH.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Publish<'a> {
    /// Packet id, present for QoS 1 and 2.
    pub(crate) packet_id: Option<u16>,
    /// Topic name bytes.
    pub(crate) topic: &'a [u8],
    /// Application payload.
    pub(crate) payload: &'a [u8],
}

/// Splits a PUBLISH body into topic, packet id and payload.
pub(crate) fn parse_publish<'a>(frame: &Frame<'a>) -> Result<Publish<'a>, ClientError> {
    let short = || {
        ClientError::Protocol(format!(
            "PUBLISH body too short ({} bytes)",
            frame.body.len()
        ))
    };
    let qos = (frame.flags >> 1) & 0x03;
    let body = frame.body;
    let topic_len = usize::from(u16::from_be_bytes([
        *body.first().ok_or_else(short)?,
        *body.get(1).ok_or_else(short)?,
    ]));
    let topic = body.get(2..2 + topic_len).ok_or_else(short)?;
    let mut rest = 2 + topic_len;
    let packet_id = if qos > 0 {
        let id = body.get(rest..rest + 2).ok_or_else(short)?;
        rest += 2;
        Some(u16::from_be_bytes([id[0], id[1]]))
    } else {
        None
    };
    Ok(Publish {
        packet_id,
        topic,
        payload: &body[rest..],
    })
}

/// The read half of a connection with its frame buffer.
#[derive(Debug)]
pub(crate) struct FrameReader {
    /// The socket's read half; the write half lives in [`MqttClient::writer`] or a publisher task.
    read: OwnedReadHalf,
    /// Bytes read but not yet consumed; `start` is the first unconsumed byte.
    buf: Vec<u8>,
    /// Offset of the first unconsumed byte in `buf`.
    start: usize,
}

impl FrameReader {
    /// The next complete packet already in the buffer, without reading from the socket.
    pub(crate) fn try_frame(&mut self) -> Result<Option<Frame<'_>>, ClientError> {
        let Some((first, body_start, body_end)) = frame_bounds(&self.buf[self.start..])? else {
            return Ok(None);
        };
        let begin = self.start;
        self.start += body_end;
        Ok(Some(Frame {
            kind: first >> 4,
            flags: first & 0x0f,
            body: &self.buf[begin + body_start..begin + body_end],
        }))
    }

    /// Reads more bytes from the socket. Cancel safe: a cancelled read loses nothing.
    pub(crate) async fn fill(&mut self) -> Result<(), ClientError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(READ_CHUNK);
        let n_read = self
            .read
            .read_buf(&mut self.buf)
            .await
            .map_err(|source| ClientError::Io {
                step: "read",
                source,
            })?;
        if n_read == 0 {
            return Err(ClientError::Closed);
        }
        Ok(())
    }

    /// Waits for the next packet and returns its type, flags and an owned body. For handshakes,
    /// not for the data path.
    async fn next_owned(&mut self) -> Result<(u8, u8, Vec<u8>), ClientError> {
        loop {
            if let Some(frame) = self.try_frame()? {
                return Ok((frame.kind, frame.flags, frame.body.to_vec()));
            }
            self.fill().await?;
        }
    }
}

/// A connected, CONNACK-ed MQTT session.
#[derive(Debug)]
pub(crate) struct MqttClient {
    /// Incoming packets.
    pub(crate) reader: FrameReader,
    /// Outgoing bytes; callers batch packets into one buffer and `write_all` it.
    pub(crate) writer: OwnedWriteHalf,
}

impl MqttClient {
    /// Connects, sends CONNECT and waits for a successful CONNACK, all within `limit`.
    pub(crate) async fn connect(
        addr: SocketAddr,
        client_id: &str,
        limit: Duration,
    ) -> Result<Self, ClientError> {
        tokio::time::timeout(limit, Self::connect_inner(addr, client_id))
            .await
            .map_err(|_elapsed| ClientError::Timeout("CONNACK"))?
    }

    async fn connect_inner(addr: SocketAddr, client_id: &str) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Io {
                step: "connect",
                source,
            })?;
        stream.set_nodelay(true).map_err(|source| ClientError::Io {
            step: "set TCP_NODELAY",
            source,
        })?;
        let (read, mut writer) = stream.into_split();
        let mut out = Vec::with_capacity(64);
        encode_connect(client_id, &mut out);
        writer
            .write_all(&out)
            .await
            .map_err(|source| ClientError::Io {
                step: "write CONNECT",
                source,
            })?;
        let mut reader = FrameReader {
            read,
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
        };
        let (kind, _flags, body) = reader.next_owned().await?;
        match (kind, body.get(1)) {
            (CONNACK, Some(0)) => Ok(Self { reader, writer }),
            (CONNACK, code) => Err(ClientError::Protocol(format!(
                "CONNACK refused with code {code:?}"
            ))),
            (other, _) => Err(ClientError::Protocol(format!(
                "expected CONNACK, got packet type {other}"
            ))),
        }
    }

    /// Subscribes to one filter and waits for a granting SUBACK, within `limit`.
    pub(crate) async fn subscribe(
        &mut self,
        filter: &str,
        qos: u8,
        limit: Duration,
    ) -> Result<(), ClientError> {
        let mut out = Vec::with_capacity(64);
        encode_subscribe(1, filter, qos, &mut out);
        let exchange = async {
            self.writer
                .write_all(&out)
                .await
                .map_err(|source| ClientError::Io {
                    step: "write SUBSCRIBE",
                    source,
                })?;
            let (kind, _flags, body) = self.reader.next_owned().await?;
            match (kind, body.get(2)) {
                (SUBACK, Some(&granted)) if granted == qos => Ok(()),
                (SUBACK, granted) => Err(ClientError::Protocol(format!(
                    "SUBACK granted {granted:?}, wanted QoS {qos}"
                ))),
                (other, _) => Err(ClientError::Protocol(format!(
                    "expected SUBACK, got packet type {other}"
                ))),
            }
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_elapsed| ClientError::Timeout("SUBACK"))?
    }

    /// Sends DISCONNECT so the broker closes the session cleanly. Errors are irrelevant here:
    /// the connection is being dropped either way.
    pub(crate) async fn disconnect(mut self) {
        let _ignored = self.writer.write_all(&[0xe0, 0x00]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_encodes_like_the_spec_table() {
        // MQTT 3.1.1 §2.2.3: the boundaries of each encoded width.
        let check = |len: usize, expected: &[u8]| {
            let mut out = Vec::new();
            encode_remaining_length(len, &mut out);
            assert_eq!(out, expected, "length {len}");
            let mut framed = vec![0x30];
            framed.extend_from_slice(&out);
            framed.resize(framed.len() + len.min(20_000), 0);
            if len <= 20_000 {
                let (_, start, end) = frame_bounds(&framed).unwrap().unwrap();
                assert_eq!(end - start, len, "round trip of {len}");
            }
        };
        check(0, &[0x00]);
        check(127, &[0x7f]);
        check(128, &[0x80, 0x01]);
        check(16_383, &[0xff, 0x7f]);
        check(16_384, &[0x80, 0x80, 0x01]);
        check(2_097_151, &[0xff, 0xff, 0x7f]);
        check(2_097_152, &[0x80, 0x80, 0x80, 0x01]);
        check(MAX_REMAINING_LENGTH, &[0xff, 0xff, 0xff, 0x7f]);
    }

    #[test]
    fn frame_bounds_waits_for_whole_packets_and_rejects_long_lengths() {
        let check = |buf: &[u8], expected: Result<Option<(u8, usize, usize)>, ()>| {
            assert_eq!(
                frame_bounds(buf).map_err(|_| ()),
                expected,
                "buffer {buf:02x?}"
            );
        };
        check(&[], Ok(None));
        check(&[0x20], Ok(None));
        check(&[0x20, 0x02, 0x00], Ok(None));
        check(&[0x20, 0x02, 0x00, 0x00], Ok(Some((0x20, 2, 4))));
        check(&[0x20, 0x02, 0x00, 0x00, 0x30], Ok(Some((0x20, 2, 4))));
        check(&[0xe0, 0x00], Ok(Some((0xe0, 2, 2))));
        check(&[0x30, 0x80, 0x80], Ok(None));
        check(&[0x30, 0x80, 0x80, 0x80, 0x80], Err(()));
    }

    #[test]
    fn publish_round_trips_through_the_parser() {
        let check = |qos: u8, packet_id: u16, expected_id: Option<u16>| {
            let mut out = Vec::new();
            encode_publish("bench/t", qos, packet_id, b"payload", &mut out);
            let (first, start, end) = frame_bounds(&out).unwrap().unwrap();
            assert_eq!(end, out.len());
            let frame = Frame {
                kind: first >> 4,
                flags: first & 0x0f,
                body: &out[start..end],
            };
            assert_eq!(frame.kind, PUBLISH);
            let publish = parse_publish(&frame).unwrap();
            assert_eq!(
                publish,
                Publish {
                    packet_id: expected_id,
                    topic: b"bench/t",
                    payload: b"payload"
                }
            );
        };
        check(0, 7, None);
        check(1, 7, Some(7));
        check(1, 65_535, Some(65_535));
    }

    #[test]
    fn control_packets_match_the_spec_bytes() {
        let check = |encode: &dyn Fn(&mut Vec<u8>), expected: &[u8]| {
            let mut out = Vec::new();
            encode(&mut out);
            assert_eq!(out, expected);
        };
        check(
            &|out| encode_connect("c1", out),
            &[
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 2, b'c', b'1',
            ],
        );
        check(
            &|out| encode_subscribe(1, "a/+", 1, out),
            &[0x82, 8, 0, 1, 0, 3, b'a', b'/', b'+', 1],
        );
        check(&|out| encode_puback(0x0102, out), &[0x40, 2, 1, 2]);
    }

    #[test]
    fn truncated_publish_is_a_protocol_error() {
        let check = |flags: u8, body: &[u8]| {
            let frame = Frame {
                kind: PUBLISH,
                flags,
                body,
            };
            assert!(parse_publish(&frame).is_err(), "body {body:02x?}");
        };
        check(0, &[]);
        check(0, &[0]);
        check(0, &[0, 5, b'a']);
        check(0x02, &[0, 1, b'a', 0]);
    }
}
