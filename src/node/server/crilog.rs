//! Reading CRI log files: `<RFC3339Nano time> <stdout|stderr> <F|P> <text>` per line, where
//! `P` marks a fragment of a longer line continued by the next record of the same stream.

/// One whole log line: fragments joined, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The time of the line's first fragment, as written in the file.
    pub time: String,
    pub stderr: bool,
    pub text: Vec<u8>,
}

impl LogLine {
    /// The line as `kubectl logs` prints it.
    pub fn render(&self, timestamps: bool, out: &mut Vec<u8>) {
        if timestamps {
            out.extend_from_slice(self.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.text);
        out.push(b'\n');
    }

    pub fn timestamp(&self) -> Option<jiff::Timestamp> {
        self.time.parse().ok()
    }
}

/// Turns file bytes, fed in pieces as they are read, into whole lines.
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes after the last newline: a record still being written.
    carry: Vec<u8>,
    /// Fragments waiting for their final record, per stream (stdout, stderr).
    partial: [Option<LogLine>; 2],
}

impl Parser {
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<LogLine>) {
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if self.carry.is_empty() {
                self.record(&rest[..nl], out);
            } else {
                self.carry.extend_from_slice(&rest[..nl]);
                let record = std::mem::take(&mut self.carry);
                self.record(&record, out);
            }
            rest = &rest[nl + 1..];
        }
        self.carry.extend_from_slice(rest);
    }

    fn record(&mut self, record: &[u8], out: &mut Vec<LogLine>) {
        let mut fields = record.splitn(4, |&b| b == b' ');
        let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            tracing::debug!("skipping a malformed CRI log record");
            return;
        };
        let text = fields.next().unwrap_or_default();
        let stderr = match stream {
            b"stdout" => false,
            b"stderr" => true,
            _ => {
                tracing::debug!("skipping a CRI log record of an unknown stream");
                return;
            }
        };
        let Ok(time) = std::str::from_utf8(time) else {
            return;
        };
        // Tags may grow `:`-separated flags; the first is full or partial.
        let partial = tag.split(|&b| b == b':').next() == Some(b"P");
        let slot = &mut self.partial[usize::from(stderr)];
        let line = match slot.take() {
            Some(mut line) => {
                line.text.extend_from_slice(text);
                line
            }
            None => LogLine {
                time: time.to_string(),
                stderr,
                text: text.to_vec(),
            },
        };
        if partial {
            *slot = Some(line);
        } else {
            out.push(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Vec<LogLine> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c.as_bytes(), &mut out);
        }
        out
    }

    fn texts(lines: &[LogLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.text).into_owned())
            .collect()
    }

    #[test]
    fn joins_partials_per_stream_and_keeps_spaces() {
        let lines = parse(&[
            "2026-11-28T18:34:09.1Z stdout P hello \n",
            "2026-11-28T18:34:09.2Z stderr F oops\n",
            "2026-11-28T18:34:09.3Z stdout F  world\n",
            "2026-11-28T18:34:09.4Z stdout F \n",
        ]);
        assert_eq!(texts(&lines), ["oops", "hello  world", ""]);
        assert_eq!(lines[1].time, "2026-11-28T18:34:09.1Z");
        assert!(lines[0].stderr);
    }

    #[test]
    fn waits_for_the_end_of_a_record() {
        let mut p = Parser::default();
        let mut out = Vec::new();
        p.feed(b"2026-11-28T18:34:09.1Z stdout F ab", &mut out);
        assert!(out.is_empty());
        p.feed(b"c\n2026-11-28T18:34:09.2Z stdout F d\n", &mut out);
        assert_eq!(texts(&out), ["abc", "d"]);
    }

    #[test]
    fn renders_with_and_without_timestamps() {
        let lines = parse(&["2026-11-28T18:34:09.123456789Z stdout F x y\n", "garbage\n"]);
        assert_eq!(lines.len(), 1);
        let mut out = Vec::new();
        lines[0].render(false, &mut out);
        lines[0].render(true, &mut out);
        assert_eq!(out, b"x y\n2026-11-28T18:34:09.123456789Z x y\n");
        assert!(lines[0].timestamp().is_some());
    }
}
