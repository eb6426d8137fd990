//! Server-Sent Events read off a response body chunk by chunk: `event:` and `data:` fields,
//! comments (keep-alives) skipped, `\n` or `\r\n` line ends.

use reqwest::Response;

/// One event: its name (`message` when the server gave none) and its data lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub(crate) name: String,
    pub(crate) data: String,
}

/// Splits a byte stream into events.
#[derive(Default)]
pub(crate) struct SseParser {
    buffer: Vec<u8>,
    name: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Adds bytes; returns the events they complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    events.push(SseEvent {
                        name: self.name.take().unwrap_or_else(|| "message".into()),
                        data,
                    });
                }
                self.name = None;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.name = Some(value.to_owned()),
                "data" => match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
        events
    }
}

/// The events of a streaming response, in order.
pub(crate) struct SseStream {
    response: Response,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
}

impl SseStream {
    pub(crate) fn new(response: Response) -> Self {
        Self {
            response,
            parser: SseParser::default(),
            ready: Default::default(),
        }
    }

    /// The next event, or `None` when the server ended the stream.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            let chunk = self
                .response
                .chunk()
                .await
                .map_err(|e| anyhow::anyhow!("the event stream broke off: {e}"))?;
            match chunk {
                Some(bytes) => self.ready.extend(self.parser.push(&bytes)),
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_line_ends_are_reassembled() {
        let mut parser = SseParser::default();
        assert!(parser.push(b": keep-alive\n\nevent: transi").is_empty());
        assert_eq!(
            parser.push(b"tion\r\ndata: {\"a\":1}\r\n\r\ndata:x\ndata: y\n\n"),
            vec![
                SseEvent {
                    name: "transition".into(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    name: "message".into(),
                    data: "x\ny".into()
                },
            ]
        );
        assert!(
            parser.push(b"event: lonely\n\n").is_empty(),
            "no data, no event"
        );
        assert_eq!(parser.push(b"data: z\n\n")[0].name, "message");
    }
}
