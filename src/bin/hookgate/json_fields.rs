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
    writer: Writer<'a>,
    /// Nothing written yet (the opening brace included).
    first: bool,
    result: fmt::Result,
}

impl<'a> ObjectVisitor<'a> {
    fn new(writer: Writer<'a>, first: bool) -> Self {
        Self {
            writer,
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
            self.writer.write_str("{}")
        } else {
            self.writer.write_char('}')
        }
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
