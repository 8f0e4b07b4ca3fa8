//! `wasmtx rule upload|list|show|activate|delete`; the changes are recorded in the audit trail.

use serde_json::json;
use wasmtx::registry::{RuleInfo, RuleVersion};

use crate::args::RuleCommand;
use crate::failure::Failure;
use crate::workspace::Workspace;
use wasmtx::views::{short_digest as short, table, utc};

use crate::output::Output;

pub async fn run(command: RuleCommand, workspace: &Workspace, out: Output) -> Result<(), Failure> {
    let registry = &workspace.registry;
    match command {
        RuleCommand::Upload { name, file, activate } => {
            let bytes =
                std::fs::read(&file).map_err(|e| Failure::input(format!("cannot read {}: {e}", file.display())))?;
            let log = workspace.audit_log().await?;
            let up = workspace.audited(&*log).upload(&name, &bytes, activate).await?;
            out.show(&up, || {
                let v = &up.version;
                let what = if up.created { "uploaded" } else { "already stored:" };
                let state = if up.active {
                    "active".to_owned()
                } else {
                    format!("inactive; `wasmtx rule activate {name} {}` runs it", v.version)
                };
                format!(
                    "{what} {name} v{} (sha256 {}, {} bytes, wasmtx:rule@{}) — {state}",
                    v.version,
                    short(&v.digest),
                    v.size,
                    v.wit_version
                )
            });
        }
        RuleCommand::List => {
            let rules = registry.rules().await?;
            out.show(&rules, || list_text(&rules));
        }
        RuleCommand::Show { name } => {
            let rule = registry.rule(&name).await?;
            out.show(&rule, || show_text(&rule));
        }
        RuleCommand::Activate { name, version } => {
            let log = workspace.audit_log().await?;
            let v = workspace.audited(&*log).activate(&name, version).await?;
            out.show(&json!({ "name": name, "active": v }), || {
                format!("{name}: v{} is active (sha256 {})", v.version, short(&v.digest))
            });
        }
        RuleCommand::Delete { name, version: Some(version), .. } => {
            let log = workspace.audit_log().await?;
            let v = workspace.audited(&*log).delete_version(&name, version).await?;
            out.show(&json!({ "name": name, "deleted": [v] }), || format!("deleted {name} v{}", v.version));
        }
        RuleCommand::Delete { name, version: None, .. } => {
            let log = workspace.audit_log().await?;
            let removed = workspace.audited(&*log).delete_rule(&name).await?;
            out.show(&json!({ "name": name, "deleted": removed }), || {
                format!("deleted {name} ({} version{})", removed.len(), if removed.len() == 1 { "" } else { "s" })
            });
        }
    }
    Ok(())
}

fn list_text(rules: &[RuleInfo]) -> String {
    if rules.is_empty() {
        return "no rules; upload one with `wasmtx rule upload NAME FILE`".into();
    }
    let mut rows = vec![["NAME", "ACTIVE", "VERSIONS", "SIZE", "SHA256", "UPLOADED"].map(String::from).to_vec()];
    for rule in rules {
        let active = rule.active_version();
        rows.push(vec![
            rule.name.clone(),
            format!("v{}", rule.active),
            rule.versions.len().to_string(),
            active.map(|v| v.size.to_string()).unwrap_or_default(),
            active.map(|v| short(&v.digest).to_owned()).unwrap_or_default(),
            active.map(|v| utc(v.uploaded_at_ms)).unwrap_or_default(),
        ]);
    }
    table(&rows)
}

fn show_text(rule: &RuleInfo) -> String {
    let mut rows =
        vec![["", "VERSION", "SIZE", "SHA256", "WIT", "FROM", "EXPORTS", "UPLOADED"].map(String::from).to_vec()];
    for v in &rule.versions {
        rows.push(version_row(v, v.version == rule.active));
    }
    format!("rule {} (active: v{})\n{}", rule.name, rule.active, table(&rows))
}

fn version_row(v: &RuleVersion, active: bool) -> Vec<String> {
    vec![
        if active { "*".into() } else { String::new() },
        format!("v{}", v.version),
        v.size.to_string(),
        v.digest.clone(),
        v.wit_version.clone(),
        if v.from_core_module { "core module".into() } else { "component".into() },
        v.exports.join(","),
        utc(v.uploaded_at_ms),
    ]
}
