//! A minimal HTTP/1.1 client connection for the load generator: requests are pre-rendered bytes
//! written to a keep-alive `TcpStream`, responses are parsed in place from one read buffer.
//!
//! Why not hyper's client here: at 30,000 requests/s on a 2-core machine shared with the server,
//! the per-request cost of the generator is the measurement's noise floor. This client does one
//! `write` and usually one `read` per request, allocates only for error bodies, and supports
//! pipelining (several requests written before the first answer is read). It speaks exactly what
//! the load mode needs: `Content-Length` or chunked responses, `Connection: close`. It is not a
//! general HTTP client; the simulation uses hyper ([`crate::transport::http`]).

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head the parser accepts.
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Largest response body kept (only error bodies are looked at).
const BODY_BYTES_MAX: usize = 1024 * 1024;
/// Read buffer size; a response of the trivial routes is ~100 bytes.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A parsed response. `body` is kept only for error statuses (it is empty on 2xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// One keep-alive connection.
pub struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl Connection {
    pub async fn connect(address: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: BytesMut::with_capacity(READ_BUFFER_BYTES),
        })
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads the next response. Cancel-safe: bytes already read stay in the buffer, so a
    /// `select!` may drop this future and call it again.
    pub async fn read_response(&mut self) -> io::Result<Response> {
        loop {
            if let Some((response, consumed)) = parse_response(&self.buffer)? {
                self.buffer.advance(consumed);
                return Ok(response);
            }
            if self.buffer.capacity() - self.buffer.len() < READ_BUFFER_BYTES / 4 {
                self.buffer.reserve(READ_BUFFER_BYTES);
            }
            let read = self.stream.read_buf(&mut self.buffer).await?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Parses one response from the front of `buffer`: `Ok(None)` when it is not complete yet,
/// else the response and the number of bytes it took.
pub fn parse_response(buffer: &[u8]) -> io::Result<Option<(Response, usize)>> {
    let Some(head_end) = find(buffer, b"\r\n\r\n") else {
        if buffer.len() > HEAD_BYTES_MAX {
            return Err(invalid("response head too large"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buffer[..head_end])
        .map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("not an HTTP/1 response: {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line: {status_line:?}")))?;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse()
                    .map_err(|_| invalid(format!("bad content-length {value:?}")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            if value.contains("close") {
                close = true;
            } else if value.contains("keep-alive") {
                close = false;
            }
        }
    }
    let body_start = head_end + 4;
    let keep_body = !(200..300).contains(&status);
    let (body, end) = if chunked {
        match parse_chunked(&buffer[body_start..])? {
            None => return Ok(None),
            Some((body, used)) => (body, body_start + used),
        }
    } else {
        let length = match content_length {
            Some(length) => length,
            None if status == 204 || status == 304 || (100..200).contains(&status) => 0,
            None => return Err(invalid("response without Content-Length or chunked body")),
        };
        if length > BODY_BYTES_MAX {
            return Err(invalid(format!("response body of {length} bytes")));
        }
        if buffer.len() < body_start + length {
            return Ok(None);
        }
        (
            buffer[body_start..body_start + length].to_vec(),
            body_start + length,
        )
    };
    let body = if keep_body { body } else { Vec::new() };
    Ok(Some((
        Response {
            status,
            body,
            close,
        },
        end,
    )))
}

/// Decodes a chunked body; `Ok(None)` when incomplete. Trailers are skipped.
fn parse_chunked(buffer: &[u8]) -> io::Result<Option<(Vec<u8>, usize)>> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = find(&buffer[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buffer[at..at + line_end])
            .map_err(|_| invalid("bad chunk size line"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        at += line_end + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(line_end) = find(&buffer[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += line_end + 2;
                if line_end == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if body.len() + size > BODY_BYTES_MAX {
            return Err(invalid("chunked body too large"));
        }
        if buffer.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buffer[at..at + size]);
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expected: Option<(u16, &[u8], bool, usize)>) {
        let parsed = parse_response(input).expect("parses");
        let parsed =
            parsed.map(|(response, used)| (response.status, response.body, response.close, used));
        let expected =
            expected.map(|(status, body, close, used)| (status, body.to_vec(), close, used));
        assert_eq!(parsed, expected, "{}", String::from_utf8_lossy(input));
    }

    #[test]
    fn parses_lengths_chunks_and_partial_input() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}";
        check(ok, Some((200, b"", false, ok.len())));
        check(&ok[..ok.len() - 1], None);
        check(&ok[..10], None);
        let error = b"HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
        check(error, Some((409, b"{}", true, error.len())));
        let chunked = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nHTTP";
        check(chunked, Some((404, b"abcde", false, chunked.len() - 4)));
        check(&chunked[..chunked.len() - 7], None);
        let two = [&ok[..], &ok[..]].concat();
        check(&two, Some((200, b"", false, ok.len())));
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }
}
