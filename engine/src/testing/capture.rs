//! Capturing the log records a rule emits during one harness call.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The `tracing` target of rule records (`runtime::log::TARGET`).
const TARGET: &str = "wasmtx::rule";

/// One record a rule emitted with its `log` interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleLogRecord {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The message.
    pub message: String,
    /// The record's key/value fields, as `key="value"` pairs separated by spaces.
    pub fields: String,
}

impl fmt::Display for RuleLogRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<5} {}", self.level, self.message)?;
        if !self.fields.is_empty() {
            write!(f, " [{}]", self.fields)?;
        }
        Ok(())
    }
}

/// A subscriber that keeps the rule records (target `wasmtx::rule`) and ignores the rest.
#[derive(Debug, Clone, Default)]
pub(crate) struct Capture {
    records: Arc<Mutex<Vec<RuleLogRecord>>>,
    next_span: Arc<AtomicU64>,
}

impl Capture {
    /// Runs `f` with this subscriber as the thread's default, and returns what it returned and
    /// the records captured meanwhile.
    pub(crate) fn run<T>(f: impl FnOnce() -> T) -> (T, Vec<RuleLogRecord>) {
        let capture = Self::default();
        let records = Arc::clone(&capture.records);
        let value = tracing::subscriber::with_default(capture, f);
        let records = std::mem::take(&mut *records.lock().unwrap_or_else(PoisonError::into_inner));
        (value, records)
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == TARGET && metadata.is_event()
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut visitor = RecordVisitor::default();
        event.record(&mut visitor);
        let record = RuleLogRecord {
            level: event.metadata().level().as_str().to_ascii_lowercase(),
            message: visitor.message,
            fields: visitor.fields,
        };
        self.records.lock().unwrap_or_else(PoisonError::into_inner).push(record);
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

#[derive(Default)]
struct RecordVisitor {
    message: String,
    fields: String,
}

impl Visit for RecordVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "fields" => self.fields = format!("{value:?}"),
            "rule" | "invocation_id" | "truncated" => {}
            other => {
                let sep = if self.fields.is_empty() { "" } else { " " };
                let _ = write!(self.fields, "{sep}{other}={value:?}");
            }
        }
    }
}
