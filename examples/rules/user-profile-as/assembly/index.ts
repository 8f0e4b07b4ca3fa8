// # User profile: the reference's update_user_settings, in AssemblyScript
//
// The twin of `examples/rules/user-profile` (Rust): same input, output, errors and writes.
//
// - models: `[0]` a `UserProfile` (see `examples/models/user_profile.toml`);
// - input: `{"new_email": "ada@example.com", "theme": "dark"}`;
// - sets the email, `preferences["theme"]` and `preferences["email_notifications"] = "enabled"`,
//   logs both changes in `activity_log`, and stamps `last_login` with the invocation's time
//   (ISO 8601 UTC, `2024-03-01T12:34:56.789Z`, from `ctx.nowMs`: a rule has no clock);
// - output: `{"username": "ada", "previous_email": "old@example.com", "email": "ada@example.com"}`;
// - errors: `rejected("invalid email address: ...")`; `invalid_input` if a field is missing.
//
// Build: `npm install && npm run build` (or let `wasmtx_examples::rules::build_rules` do it);
// the rule is `build/user_profile.wasm`.

import { Context, Json, Outcome, exportRule, ok, propagate, reject } from "wasmtx-guest";
export { run, cabi_realloc } from "wasmtx-guest/abi";

function updateUserSettings(ctx: Context, input: Json): Outcome {
  const newEmail = input.get("new_email").asStr();
  const theme = input.get("theme").asStr();
  if (ctx.failed) return propagate();
  if (!isValidEmail(newEmail)) return reject("invalid email address: " + newEmail);

  const profile = ctx.model(0);
  const oldEmail = profile.getStr("email");
  profile.setStr("email", newEmail);

  const preferences = profile.dict("preferences");
  preferences.set("theme", theme);
  preferences.set("email_notifications", "enabled");

  const activity = profile.list("activity_log");
  activity.append("Email changed from " + oldEmail + " to " + newEmail);
  activity.append("Theme changed to " + theme);

  profile.setStr("last_login", ctx.isoTime());

  const summary = Json.object()
    .set("username", Json.str(profile.getStr("username")))
    .set("previous_email", Json.str(oldEmail))
    .set("email", Json.str(newEmail));
  return ok(summary);
}

/** One `@`, something before it, a dotted domain after it, and no spaces. */
function isValidEmail(email: string): bool {
  const at = email.indexOf("@");
  if (at < 1 || email.indexOf("@", at + 1) >= 0) return false;
  const domain = email.substring(at + 1);
  if (!domain.includes(".") || domain.startsWith(".") || domain.endsWith(".")) return false;
  for (let i = 0; i < email.length; i++) {
    const c = email.charCodeAt(i);
    if (c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d) return false;
  }
  return true;
}

exportRule(updateUserSettings);
