//! Incremental Server-Sent Events parser (reference §6), robust to arbitrary chunk
//! boundaries (inside a line, inside a UTF-8 sequence, between `\r` and `\n`) and bounded in
//! memory: a line longer than the limit is discarded together with the event it belongs to.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`"message"` when absent, as in the HTML spec).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Feeds bytes in, gets complete events out.
#[derive(Debug)]
pub struct SseParser {
    max_line: usize,
    line: Vec<u8>,
    /// The current line overflowed: skip to its end.
    skipping_line: bool,
    /// The current event saw an overflowing line: drop it when it dispatches.
    poisoned: bool,
    /// The previous chunk ended with `\r`: a leading `\n` belongs to it.
    after_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// A parser that accepts lines (and accumulated event data) up to `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            line: Vec::new(),
            skipping_line: false,
            poisoned: false,
            after_cr: false,
            event: None,
            data: String::new(),
            has_data: false,
        }
    }

    /// Consumes a chunk and returns the events completed by it.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while !rest.is_empty() {
            match rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
                None => {
                    self.push_bytes(rest);
                    break;
                }
                Some(i) => {
                    self.push_bytes(&rest[..i]);
                    let was_cr = rest[i] == b'\r';
                    rest = &rest[i + 1..];
                    if was_cr {
                        match rest.first() {
                            Some(b'\n') => rest = &rest[1..],
                            None => self.after_cr = true,
                            Some(_) => {}
                        }
                    }
                    self.end_line(&mut out);
                }
            }
        }
        out
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        if self.skipping_line {
            return;
        }
        if self.line.len() + bytes.len() > self.max_line {
            self.line.clear();
            self.line.shrink_to(4096);
            self.skipping_line = true;
            self.poisoned = true;
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        if self.skipping_line {
            self.skipping_line = false;
            return;
        }
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        let text = String::from_utf8_lossy(&line);
        if text.starts_with(':') {
            return;
        }
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&text[..], ""),
        };
        match field {
            "event" => self.event = Some(value.trim().to_owned()),
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_line {
                    self.poisoned = true;
                    return;
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {} // id:, retry: and unknown fields are ignored
        }
        // Reuse the line buffer's allocation.
        let mut line = line;
        line.clear();
        self.line = line;
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        let data = std::mem::take(&mut self.data);
        let has_data = std::mem::replace(&mut self.has_data, false);
        let poisoned = std::mem::replace(&mut self.poisoned, false);
        if poisoned || !has_data {
            return;
        }
        out.push(SseEvent {
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".to_owned()),
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str =
        ": comment\r\nevent: init\ndata: {\"breakpoints\":[],\"kill_switch\":false}\n\n\
        id: 7\nretry: 100\nevent:heartbeat\ndata: {}\n\n\
        event: multi\r\ndata: a\r\ndata:b\r\n\r\n\
        data: no-event\n\n\
        event: no-data\n\n\
        event: unicode\ndata: h\u{e9}llo \u{1F600}\r\rdata: x\n\n";

    fn expected() -> Vec<SseEvent> {
        let e = |event: &str, data: &str| SseEvent {
            event: event.into(),
            data: data.into(),
        };
        vec![
            e("init", "{\"breakpoints\":[],\"kill_switch\":false}"),
            e("heartbeat", "{}"),
            e("multi", "a\nb"),
            e("message", "no-event"),
            e("unicode", "h\u{e9}llo \u{1F600}"),
            e("message", "x"),
        ]
    }

    fn feed_in(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new(1 << 20);
        chunks.iter().flat_map(|c| p.feed(c)).collect()
    }

    #[test]
    fn parses_whole_stream() {
        assert_eq!(feed_in(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for i in 0..=bytes.len() {
            assert_eq!(
                feed_in(&[&bytes[..i], &bytes[i..]]),
                expected(),
                "split at {i}"
            );
        }
    }

    #[test]
    fn byte_by_byte_and_pseudo_random_chunks() {
        let bytes = STREAM.as_bytes();
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(feed_in(&singles), expected());
        let mut seed = 0x9e37_79b9_u32;
        for _ in 0..200 {
            let mut chunks = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let n = (seed as usize % 9 + 1).min(rest.len());
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(feed_in(&chunks), expected());
        }
    }

    #[test]
    fn overlong_lines_drop_their_event_and_stay_bounded() {
        let mut p = SseParser::new(64);
        let long = format!(
            "event: big\ndata: {}\n\nevent: ok\ndata: 1\n\n",
            "x".repeat(500)
        );
        let mut events = Vec::new();
        for c in long.as_bytes().chunks(7) {
            events.extend(p.feed(c));
            assert!(p.line.len() <= 64 && p.data.len() <= 64);
        }
        assert_eq!(
            events,
            vec![SseEvent {
                event: "ok".into(),
                data: "1".into()
            }]
        );
        // Many data lines that together exceed the cap poison the event too.
        let many = format!(
            "event: big\n{}\nevent: ok2\ndata: 2\n\n",
            "data: 0123456789\n".repeat(20)
        );
        let events = p.feed(many.as_bytes());
        assert_eq!(
            events,
            vec![SseEvent {
                event: "ok2".into(),
                data: "2".into()
            }]
        );
    }
}
