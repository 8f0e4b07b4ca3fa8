//! Rule logging: `log.emit` becomes a `tracing` event, with per-run caps on count and size.

use std::fmt::Write as _;

use super::bindings::wasmtx::rule::log::Level;
use super::config::RuleLimits;

/// The `tracing` target of rule records, so subscribers can filter them apart from the engine's.
pub(crate) const TARGET: &str = "wasmtx::rule";

/// One run's log sink.
#[derive(Debug)]
pub(crate) struct RuleLog {
    rule: String,
    invocation_id: String,
    max_records: usize,
    max_bytes: usize,
    emitted: usize,
    dropped: usize,
}

macro_rules! rule_event {
    ($level:expr, $log:expr, $message:expr, $fields:expr, $truncated:expr) => {
        tracing::event!(
            target: TARGET,
            $level,
            rule = %$log.rule,
            invocation_id = %$log.invocation_id,
            fields = %$fields,
            truncated = $truncated,
            "{}",
            $message
        )
    };
}

impl RuleLog {
    pub(crate) fn new(rule: &str, invocation_id: &str, limits: &RuleLimits) -> Self {
        Self {
            rule: rule.to_owned(),
            invocation_id: invocation_id.to_owned(),
            max_records: limits.max_log_records,
            max_bytes: limits.max_log_bytes,
            emitted: 0,
            dropped: 0,
        }
    }

    /// Emits one record, or drops and counts it past the cap.
    pub(crate) fn emit(&mut self, level: Level, message: String, fields: &[(String, String)]) {
        if self.emitted >= self.max_records {
            self.dropped += 1;
            return;
        }
        self.emitted += 1;
        let (message, fields, truncated) = self.clip(message, fields);
        match level {
            Level::Trace => rule_event!(tracing::Level::TRACE, self, message, fields, truncated),
            Level::Debug => rule_event!(tracing::Level::DEBUG, self, message, fields, truncated),
            Level::Info => rule_event!(tracing::Level::INFO, self, message, fields, truncated),
            Level::Warn => rule_event!(tracing::Level::WARN, self, message, fields, truncated),
            Level::Error => rule_event!(tracing::Level::ERROR, self, message, fields, truncated),
        }
    }

    /// Cuts a record to `max_bytes`: the message first, then `key=value` fields with what is
    /// left. Returns whether anything was cut.
    fn clip(&self, mut message: String, fields: &[(String, String)]) -> (String, String, bool) {
        let mut truncated = truncate(&mut message, self.max_bytes);
        let mut text = String::new();
        for (key, value) in fields {
            let sep = if text.is_empty() { "" } else { " " };
            let _ = write!(text, "{sep}{key}={value:?}");
        }
        truncated |= truncate(&mut text, self.max_bytes - message.len());
        (message, text, truncated)
    }

    /// Warns once, at the end of the run, if records were dropped.
    pub(crate) fn finish(&self) {
        if self.dropped > 0 {
            tracing::warn!(
                target: TARGET,
                rule = %self.rule,
                invocation_id = %self.invocation_id,
                dropped = self.dropped,
                "rule emitted more than {} log records; the rest were dropped",
                self.max_records
            );
        }
    }

    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.emitted, self.dropped)
    }
}

/// Truncates to at most `max` bytes on a char boundary; whether it cut anything.
fn truncate(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(max_records: usize, max_bytes: usize) -> RuleLog {
        RuleLog::new(
            "r",
            "inv",
            &RuleLimits { max_log_records: max_records, max_log_bytes: max_bytes, ..RuleLimits::default() },
        )
    }

    #[test]
    fn records_past_the_cap_are_dropped_and_counted() {
        let mut log = log(2, 100);
        for i in 0..5 {
            log.emit(Level::Info, format!("record {i}"), &[]);
        }
        assert_eq!(log.counts(), (2, 3));
        log.finish();
    }

    #[test]
    fn records_are_clipped_to_the_byte_cap() {
        let log = log(1, 8);
        let (message, fields, truncated) = log.clip("héllo wörld".into(), &[("k".into(), "v".into())]);
        assert!(truncated);
        assert!(message.len() <= 8 && fields.is_empty(), "{message:?} {fields:?}");
        let (message, fields, truncated) = log.clip("hi".into(), &[("k".into(), "v".into())]);
        assert_eq!((message.as_str(), fields.as_str(), truncated), ("hi", "k=\"v\"", false));
    }
}
