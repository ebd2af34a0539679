//! The fields of a span, formatted for the JSON log format as tracing-subscriber's `JsonFields`
//! does (one JSON object, `{"id":"..."}`), written directly instead of through a
//! `serde_json::Map` and its serializer: the gateway opens a span per request (naming its id),
//! and with `JsonFields` formatting that span cost more than anything else the gateway adds to
//! a delivery (about 4k instructions, `benches/gateway/instructions.sh`).

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::{RecordFields, VisitOutput},
    fmt::{format::Writer, FormatFields, FormattedFields},
};

/// Span fields as one JSON object: strings and `Debug`/`Display` values as JSON strings,
/// numbers and booleans as themselves.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = ObjectVisitor::new(writer, true);
        fields.record(&mut visitor);
        visitor.finish()
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // `{...}` already written: reopen it and append.
        let first = current.fields.is_empty() || current.fields == "{}";
        if first {
            current.fields.clear();
        } else {
            current.fields.pop();
        }
        let mut visitor = ObjectVisitor::new(current.as_writer(), first);
        fields.record(&mut visitor);
        visitor.finish()
    }
}

struct ObjectVisitor<'a> {
    writer: Staged<'a>,
    /// Nothing written yet (the opening brace included).
    first: bool,
    result: fmt::Result,
}

impl<'a> ObjectVisitor<'a> {
    fn new(writer: Writer<'a>, first: bool) -> Self {
        Self {
            writer: Staged::new(writer),
            first,
            result: Ok(()),
        }
    }

    fn key(&mut self, field: &Field) {
        if self.result.is_err() {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            "{"
        } else {
            ","
        };
        self.result = self
            .writer
            .write_str(separator)
            .and_then(|()| write_json_str(&mut self.writer, field.name()))
            .and_then(|()| self.writer.write_char(':'));
    }

    fn raw(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        self.key(field);
        if self.result.is_ok() {
            self.result = self.writer.write_fmt(value);
        }
    }
}

impl Visit for ObjectVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        if self.result.is_ok() {
            self.result = write_json_str(&mut self.writer, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, format_args!("{value}"));
        } else {
            // serde_json writes a non-finite number as null.
            self.raw(field, format_args!("null"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Rare on spans (`%value` / `?value`): formatted first, then escaped.
        self.record_str(field, &format!("{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for ObjectVisitor<'_> {
    fn finish(mut self) -> fmt::Result {
        self.result?;
        if self.first {
            self.writer.write_str("{}")?;
        } else {
            self.writer.write_char('}')?;
        }
        self.writer.flush()
    }
}

/// How many bytes [`Staged`] gathers before handing them on.
const STAGED_BYTES: usize = 256;

/// The visitor's many small writes (a brace, a quote, a name, a colon...) gathered on the
/// stack and handed to the span's writer in one piece: the span's `String` then grows once, to
/// its size, instead of three or four times, and the writer (a `dyn Write`) is called once.
/// What does not fit is handed on as it comes.
struct Staged<'a> {
    writer: Writer<'a>,
    buffer: [u8; STAGED_BYTES],
    len: usize,
}

impl<'a> Staged<'a> {
    fn new(writer: Writer<'a>) -> Self {
        Self {
            writer,
            buffer: [0; STAGED_BYTES],
            len: 0,
        }
    }

    /// Hands on what is gathered.
    fn flush(&mut self) -> fmt::Result {
        let len = std::mem::take(&mut self.len);
        if len == 0 {
            return Ok(());
        }
        // Only whole `str`s are gathered, so this is text.
        let text = std::str::from_utf8(&self.buffer[..len]).map_err(|_| fmt::Error)?;
        self.writer.write_str(text)
    }
}

impl Write for Staged<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if self.len + text.len() > STAGED_BYTES {
            self.flush()?;
            if text.len() > STAGED_BYTES {
                return self.writer.write_str(text);
            }
        }
        self.buffer[self.len..self.len + text.len()].copy_from_slice(text.as_bytes());
        self.len += text.len();
        Ok(())
    }
}

/// `value` as a JSON string, quoted and escaped.
fn write_json_str(writer: &mut impl Write, value: &str) -> fmt::Result {
    // Request ids and the like: nothing to escape, three writes.
    if !value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        writer.write_str("\"")?;
        writer.write_str(value)?;
        return writer.write_str("\"");
    }
    writer.write_char('"')?;
    let mut start = 0;
    for (index, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        writer.write_str(&value[start..index])?;
        if escape.is_empty() {
            write!(writer, "\\u{byte:04x}")?;
        } else {
            writer.write_str(escape)?;
        }
        start = index + 1;
    }
    writer.write_str(&value[start..])?;
    writer.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &str) -> String {
        let mut out = String::new();
        write_json_str(&mut out, value).unwrap();
        out
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        for value in [
            "plain",
            "q\"uote",
            "back\\slash",
            "line\nbreak\t\r",
            "\u{1}ctl",
            "é✓",
        ] {
            assert_eq!(json(value), serde_json::to_string(value).unwrap());
        }
    }

    /// The fields written whole whatever their length: within the staging buffer, across its
    /// end, and longer than it.
    #[test]
    fn fields_of_any_length_are_written_whole() {
        /// Formats a span's fields as the JSON subscriber would, when the span is made.
        struct Capture(std::sync::Mutex<Vec<String>>);
        impl tracing::Subscriber for Capture {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                let mut out = String::new();
                JsonSpanFields
                    .format_fields(Writer::new(&mut out), span)
                    .unwrap();
                self.0.lock().unwrap().push(out);
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, _: &tracing::Event<'_>) {}
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }

        let capture = std::sync::Arc::new(Capture(std::sync::Mutex::new(Vec::new())));
        let lens = [0, 1, 100, 240, 250, 255, 256, 257, 300, 600];
        tracing::subscriber::with_default(capture.clone(), || {
            for len in lens {
                let a = "x".repeat(len);
                let b = format!("{}\"q\n", "y".repeat(len / 2));
                let _span = tracing::info_span!("request", a = a.as_str(), b = b.as_str());
            }
            let _span = tracing::info_span!("empty");
        });
        let formatted = capture.0.lock().unwrap();
        assert_eq!(formatted.len(), lens.len() + 1);
        for (len, out) in lens.iter().zip(formatted.iter()) {
            let a = "x".repeat(*len);
            let b = format!("{}\"q\n", "y".repeat(len / 2));
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(out).unwrap(),
                serde_json::json!({ "a": a, "b": b }),
                "{out}"
            );
        }
        assert_eq!(formatted[lens.len()], "{}");
    }

    #[test]
    fn span_fields_are_one_json_object_that_grows() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::fmt::MakeWriter;

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Buffer {
            type Writer = Self;
            fn make_writer(&'a self) -> Self {
                self.clone()
            }
        }

        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .fmt_fields(JsonSpanFields)
            .with_writer(buffer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                id = "a\"b",
                n = 3_u64,
                later = tracing::field::Empty
            );
            span.record("later", true);
            let _entered = span.enter();
            tracing::info!(x = 1, "inside");
        });
        let line = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let event: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(event["span"]["id"], "a\"b");
        assert_eq!(event["span"]["n"], 3);
        assert_eq!(event["span"]["later"], true);
        assert_eq!(event["fields"]["message"], "inside");
    }
}
