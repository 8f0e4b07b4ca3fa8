//! The chaos suite (`cargo run --release --bin chaos`, `wasmtx_example_host::chaos`): a short
//! seeded run with every fault finds no violation, and its checkers do catch each kind of
//! violation they look for (fed histories that break them). The seed is printed; set
//! `WASMTX_TEST_SEED` to replay a run.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use wasmtx::Mode;
use wasmtx_example_host::chaos::bank::{self, Bank, Stored, Transfer};
use wasmtx_example_host::chaos::history::{Fate, Record};
use wasmtx_example_host::chaos::lists::{self, ListTxn, Mop};
use wasmtx_example_host::chaos::report::Checks;
use wasmtx_example_host::chaos::{self, ChaosConfig, Tail};

fn seed() -> u64 {
    let seed = std::env::var("WASMTX_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("WASMTX_TEST_SEED={seed}");
    seed
}

/// Ten seconds of both workloads, half on two engines in this process and half over HTTP on
/// three `wasmtx serve` processes, with connections killed, replies delayed, Redis restarted,
/// servers killed and callers giving up: every invariant holds, and every kind of fault
/// happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_seeded_chaos_run_with_every_fault_violates_nothing() -> Result<()> {
    let config = ChaosConfig {
        duration: Duration::from_secs(10),
        seed: seed(),
        callers: 12,
        serve: Some(crate::process::wasmtx_bin()?.to_owned()),
        ..ChaosConfig::default()
    };
    let report = chaos::run(&config).await?;
    let summary = report.render();
    println!("{summary}");
    ensure!(report.total_violations() == 0, "violations:\n{summary}");
    ensure!(report.total_ops() > 200, "too few operations to mean anything:\n{summary}");
    ensure!(report.faults.len() == 5 && report.faults.values().all(|&n| n > 0), "not every fault happened:\n{summary}");
    ensure!(summary.ends_with(&format!(
        "chaos: {} ops, {} faults, 0 violations",
        report.total_ops(),
        report.total_faults()
    )));
    Ok(())
}

fn acked(output: &str) -> Fate {
    Fate::Acked { output: output.to_owned(), replayed: false }
}

fn failed() -> Fate {
    Fate::Failed { kind: "rejected".to_owned(), internal: false }
}

fn txn(id: u64, mops: Vec<Mop>, mode: Mode, start: u64, end: u64, fate: Fate) -> Record<ListTxn> {
    Record { id, op: ListTxn { mops, mode, tail: Tail::None }, start, end, fate, resolved: false }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| (*s).to_owned()).collect()
}

/// The names of the invariants `checks` found violated.
fn violated(checks: &Checks) -> Vec<&'static str> {
    checks.violated().to_vec()
}

/// A list history case: the invariant it must be reported under, the final lists, the history.
type ListCase = (&'static str, Vec<Vec<String>>, Vec<Record<ListTxn>>);

/// Each list anomaly the checker looks for, in a history of its own, is reported under its own
/// name, and a clean history of the same shape is not.
#[test]
fn the_list_append_checker_reports_each_anomaly() -> Result<()> {
    let append = |k| Mop::Append(k);
    let cases: Vec<ListCase> = vec![
        (
            "clean",
            vec![strings(&["t1", "t2"])],
            vec![
                txn(1, vec![append(0)], Mode::Lock, 0, 1, acked("[null]")),
                txn(2, vec![append(0)], Mode::Lock, 2, 3, acked("[null]")),
            ],
        ),
        (
            "each acknowledged effect applied",
            vec![strings(&["t1"])],
            vec![
                txn(1, vec![append(0)], Mode::Lock, 0, 1, acked("[null]")),
                txn(2, vec![append(0)], Mode::Optimistic, 2, 3, acked("[null]")),
            ],
        ),
        (
            "a failed invocation wrote nothing",
            vec![strings(&["t1"])],
            vec![txn(1, vec![append(0)], Mode::Pipeline, 0, 1, failed())],
        ),
        (
            "lists: each append applied at most once",
            vec![strings(&["t1", "t1"])],
            vec![txn(1, vec![append(0)], Mode::Lock, 0, 1, acked("[null]"))],
        ),
        ("lists: no value from nowhere", vec![strings(&["t9"])], vec![]),
        (
            "lists: no partial transaction",
            vec![strings(&["t1"]), vec![]],
            vec![txn(1, vec![append(0), append(1)], Mode::Lock, 0, 1, acked("[null, null]"))],
        ),
        (
            "lists: reads are prefixes of the final list",
            vec![strings(&["t1"])],
            vec![
                txn(1, vec![append(0)], Mode::Lock, 0, 1, acked("[null]")),
                txn(2, vec![Mop::Read(0)], Mode::Lock, 2, 3, acked(r#"[["t7"]]"#)),
            ],
        ),
        (
            "lists: appends in real-time order",
            vec![strings(&["t1", "t2"])],
            vec![
                txn(1, vec![append(0)], Mode::Lock, 2, 3, acked("[null]")),
                txn(2, vec![append(0)], Mode::Lock, 0, 1, acked("[null]")),
            ],
        ),
        (
            "lists: a read sees every append acknowledged before it was sent",
            vec![strings(&["t1"])],
            vec![
                txn(1, vec![append(0)], Mode::Lock, 0, 1, acked("[null]")),
                txn(2, vec![Mop::Read(0)], Mode::Lock, 2, 3, acked("[[]]")),
            ],
        ),
        // Write skew: each read the other's list before the other's append, concurrently.
        (
            "lists: locked and optimistic transactions serializable",
            vec![strings(&["t1"]), strings(&["t2"])],
            vec![
                txn(1, vec![append(0), Mop::Read(1)], Mode::Lock, 0, 2, acked("[null, []]")),
                txn(2, vec![append(1), Mop::Read(0)], Mode::Optimistic, 1, 3, acked("[null, []]")),
            ],
        ),
    ];
    for (want, finals, history) in cases {
        let mut checks = Checks::default();
        lists::check_lists(&finals, &history, &mut checks);
        let names = violated(&checks);
        if want == "clean" {
            ensure!(names.is_empty(), "a clean history was reported: {:?}", checks.violations());
        } else {
            ensure!(names.contains(&want), "{want}: not reported; got {:?}", checks.violations());
        }
    }
    Ok(())
}

/// The bank checker reports a partial transfer, a transfer applied twice and a balance its log
/// does not account for.
#[test]
fn the_bank_checker_reports_partial_double_and_unaccounted_transfers() -> Result<()> {
    let bank = Bank { accounts: 2, initial: 100 };
    let transfer = |id| Record {
        id,
        op: Transfer { from: Some(0), to: 1, amount: 10, mode: Mode::Lock, tail: Tail::None },
        start: 0,
        end: 1,
        fate: acked("[]"),
        resolved: false,
    };
    let state = |a0: (i64, &[&str]), a1: (i64, &[&str]), reserve: i64| {
        BTreeMap::from([
            ("a0".to_owned(), Stored { balance: a0.0, log: strings(a0.1) }),
            ("a1".to_owned(), Stored { balance: a1.0, log: strings(a1.1) }),
            (bank::RESERVE.to_owned(), Stored { balance: reserve, log: Vec::new() }),
        ])
    };
    let cases = [
        ("clean", state((90, &["t1"]), (110, &["t1"]), 0)),
        ("bank: no partial transfer", state((90, &["t1"]), (100, &[]), 10)),
        ("bank: each transfer applied at most once", state((80, &["t1", "t1"]), (120, &["t1", "t1"]), 0)),
        (
            "bank: each balance is its initial one plus the transfers in its log",
            state((95, &["t1"]), (105, &["t1"]), 0),
        ),
        ("bank: money conserved", state((90, &["t1"]), (111, &["t1"]), 0)),
    ];
    for (want, stored) in cases {
        let mut checks = Checks::default();
        bank::check_accounts(&bank, &stored, &[transfer(1)], &mut checks)?;
        let names = violated(&checks);
        if want == "clean" {
            ensure!(names.is_empty(), "a clean state was reported: {:?}", checks.violations());
        } else {
            ensure!(names.contains(&want), "{want}: not reported; got {:?}", checks.violations());
        }
    }
    Ok(())
}
