//! The Grafana dashboard (`examples/dashboards/wasmtx.grafana.json`) names only metrics the
//! server exports, shows every family it exports, and is laid out as Grafana expects; a live
//! `wasmtx serve` renders those families under the same names and kinds.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;
use wasmtx::server::metrics::FAMILIES;
use wasmtx_examples::workspace_root;

use crate::process::{Server, TempDir};

fn dashboard() -> Result<Value> {
    let path = workspace_root().join("examples/dashboards/wasmtx.grafana.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Every query of the dashboard: panel targets and template variables.
fn queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.extend(target["expr"].as_str().map(str::to_owned));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        out.extend(variable["query"]["query"].as_str().map(str::to_owned));
    }
    out
}

/// The `wasmtx_...` metric names a query mentions.
fn metric_names(query: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("wasmtx_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(&tail[..end]);
        rest = &tail[end..];
    }
    names
}

/// The family a series name belongs to (a histogram's `_bucket`, `_sum` and `_count` series
/// belong to it), if the server exports it.
fn family_of(series: &str) -> Option<&'static str> {
    FAMILIES.iter().find_map(|f| {
        let of_histogram = f.kind == "histogram"
            && ["_bucket", "_sum", "_count"].iter().any(|s| series.strip_suffix(s) == Some(f.name));
        (series == f.name || of_histogram).then_some(f.name)
    })
}

/// No panel names a metric the server does not export, and every exported family is on a
/// panel (a family added to the server shows up here until the dashboard shows it).
#[test]
fn the_dashboard_names_only_exported_metrics_and_shows_every_family() -> Result<()> {
    let dashboard = dashboard()?;
    let mut shown = BTreeSet::new();
    for query in queries(&dashboard) {
        let names = metric_names(&query);
        ensure!(!names.is_empty(), "a query with no wasmtx metric: {query}");
        for name in names {
            let family = family_of(name).with_context(|| format!("{name} (in `{query}`) is not exported"))?;
            ensure!(
                FAMILIES.iter().any(|f| f.name == family && (f.kind != "histogram" || name != family)),
                "{name}: a histogram is queried by its _bucket, _sum or _count series"
            );
            shown.insert(family);
        }
    }
    let missing: Vec<&str> = FAMILIES.iter().map(|f| f.name).filter(|n| !shown.contains(n)).collect();
    ensure!(missing.is_empty(), "families on no panel: {missing:?}");
    Ok(())
}

/// Panels have unique ids, fit the 24-column grid, query through the dashboard's data source
/// variable, and every non-row panel has a title and a query.
#[test]
fn the_dashboard_is_laid_out_as_grafana_expects() -> Result<()> {
    let dashboard = dashboard()?;
    ensure!(dashboard["uid"].is_string() && dashboard["schemaVersion"].is_u64(), "uid and schemaVersion");
    let panels = dashboard["panels"].as_array().context("no panels")?;
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        ensure!(ids.insert(panel["id"].as_u64().context("a panel id")?), "duplicate id of {title}");
        let (x, w) = (panel["gridPos"]["x"].as_u64().unwrap_or(99), panel["gridPos"]["w"].as_u64().unwrap_or(99));
        ensure!(x + w <= 24 && panel["gridPos"]["h"].as_u64().is_some(), "{title}: off the grid");
        if panel["type"] == "row" {
            continue;
        }
        ensure!(!title.is_empty(), "a panel without a title");
        let targets =
            panel["targets"].as_array().filter(|t| !t.is_empty()).with_context(|| format!("{title}: no query"))?;
        for target in targets {
            ensure!(target["datasource"]["uid"] == "${datasource}", "{title}: a fixed data source");
        }
    }
    Ok(())
}

/// A live server renders the listed families under the same names and kinds (the gauges at
/// once, the HTTP families after one request).
#[tokio::test]
async fn a_live_server_exports_the_listed_families() -> Result<()> {
    let dir = TempDir::new("dashboard")?;
    let server = Server::start(dir.path(), &[], &[])?;
    let http = reqwest::Client::new();
    http.get(server.at("/v1/rules")).send().await?.error_for_status()?;
    let text = http.get(server.at("/metrics")).send().await?.error_for_status()?.text().await?;
    let mut rendered = BTreeSet::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').with_context(|| format!("TYPE line {line:?}"))?;
        let listed = FAMILIES.iter().find(|f| f.name == name).with_context(|| format!("{name} is not listed"))?;
        ensure!(listed.kind == kind, "{name}: {kind}, listed as {}", listed.kind);
        rendered.insert(name);
    }
    for expected in ["wasmtx_http_requests_total", "wasmtx_http_request_duration_seconds", "wasmtx_rules_cached"] {
        ensure!(rendered.contains(expected), "{expected} not rendered: {text}");
    }
    Ok(())
}
