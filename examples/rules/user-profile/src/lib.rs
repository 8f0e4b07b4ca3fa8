//! # User profile: the reference's `update_user_settings`
//!
//! The twin of `examples/rules/user-profile-as` (AssemblyScript): same input, output, errors
//! and writes, so the two can serve the same `UserProfile` models interchangeably.
//!
//! - models: `[0]` a `UserProfile` (see `examples/models/user_profile.toml`);
//! - input: `{"new_email": "ada@example.com", "theme": "dark"}`;
//! - sets the email, `preferences["theme"]` and `preferences["email_notifications"] =
//!   "enabled"`, logs both changes in `activity_log`, and stamps `last_login` with the
//!   invocation's time (ISO 8601 UTC, `2024-03-01T12:34:56.789Z`, from [`Context::now_ms`]: a
//!   rule has no clock);
//! - output: `{"username": "ada", "previous_email": "old@example.com", "email":
//!   "ada@example.com"}`;
//! - errors: `rejected("invalid email address: ...")`; `invalid_input` if a field is missing.
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown -p rule-user-profile` (or let
//! `wasmtx_examples::rules::build_rules` do it).

use serde::{Deserialize, Serialize};
use wasmtx_guest::UtcDate;
use wasmtx_guest::prelude::*;

/// The caller's input.
#[derive(Debug, Deserialize)]
struct Settings {
    new_email: String,
    theme: String,
}

/// The rule's output.
#[derive(Debug, Serialize)]
struct Updated {
    username: String,
    previous_email: String,
    email: String,
}

fn update_user_settings(ctx: &Context, input: Settings) -> RuleResult<Updated> {
    let Settings { new_email, theme } = input;
    if !is_valid_email(&new_email) {
        return Err(reject(format!("invalid email address: {new_email}")));
    }

    let profile = ctx.model(0)?;
    let old_email = profile.get_str("email")?;
    profile.set_str("email", new_email.as_str())?;

    let preferences = profile.dict("preferences");
    preferences.set("theme", theme.as_str())?;
    preferences.set("email_notifications", "enabled")?;

    let activity = profile.list("activity_log");
    activity.append(format!("Email changed from {old_email} to {new_email}"))?;
    activity.append(format!("Theme changed to {theme}"))?;

    profile.set_str("last_login", iso_time(ctx.now_ms()))?;

    Ok(Updated { username: profile.get_str("username")?, previous_email: old_email, email: new_email })
}

/// One `@`, something before it, a dotted domain after it, and no spaces.
fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains([' ', '\t', '\n', '\r'])
}

/// `ms` (milliseconds since the Unix epoch) as `2024-03-01T12:34:56.789Z`.
fn iso_time(ms: i64) -> String {
    let date = UtcDate::from_unix_ms(ms);
    let in_day = ms.rem_euclid(86_400_000);
    format!(
        "{date}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

export_rule!(update_user_settings);
