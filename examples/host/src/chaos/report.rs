//! The end of a chaos run: the invariant checks with their counts, and the summary table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// How many violations are quoted in the summary (all are counted).
const QUOTED: usize = 20;

/// How much of one violation's description is kept (a read of a long list would fill pages).
const DESCRIPTION_CHARS: usize = 400;

/// The invariant checks of a run: how often each was checked and how often it failed, with
/// the failures described.
#[derive(Debug, Default)]
pub struct Checks {
    counts: BTreeMap<&'static str, (u64, u64)>,
    violations: Vec<String>,
    violated: Vec<&'static str>,
}

impl Checks {
    /// Checks one instance of invariant `name`; `describe` says what went wrong when `ok` is
    /// false.
    pub fn expect(&mut self, name: &'static str, ok: bool, describe: impl FnOnce() -> String) {
        let (checked, failed) = self.counts.entry(name).or_default();
        *checked += 1;
        if !ok {
            *failed += 1;
            let mut description = describe();
            if let Some((cut, _)) = description.char_indices().nth(DESCRIPTION_CHARS) {
                let total = description.chars().count();
                description.truncate(cut);
                description.push_str(&format!("… ({total} characters)"));
            }
            self.violations.push(format!("{name}: {description}"));
            self.violated.push(name);
        }
    }

    /// Every violation found, described.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// The name of the invariant of each violation, in the order of [`Checks::violations`].
    pub fn violated(&self) -> &[&'static str] {
        &self.violated
    }

    /// How many instances were checked in all.
    pub fn checked(&self) -> u64 {
        self.counts.values().map(|(c, _)| c).sum()
    }
}

/// What a chaos run did and found.
#[derive(Debug, Default)]
pub struct ChaosReport {
    /// The seed it ran with.
    pub seed: u64,
    /// How long the workloads ran.
    pub ran_for: Duration,
    /// Operations per workload and fate (`acked`, `failed: <kind>`, ...), as first answered.
    pub ops: BTreeMap<String, BTreeMap<String, u64>>,
    /// Operations whose first answer was unknown, per workload, and what invoking them again
    /// with their key said.
    pub resolved: BTreeMap<String, BTreeMap<String, u64>>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// The invariant checks.
    pub checks: Checks,
    /// How long the last lock took to go once the workloads stopped.
    pub locks_gone_after: Duration,
}

impl ChaosReport {
    /// Operations run in all.
    pub fn total_ops(&self) -> u64 {
        self.ops.values().flat_map(BTreeMap::values).sum()
    }

    /// Faults injected in all.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }

    /// Invariant violations found.
    pub fn total_violations(&self) -> usize {
        self.checks.violations.len()
    }

    /// The summary: tables of operations, faults and checks, the violations, and the last line
    /// `chaos: N ops, F faults, V violations`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "chaos run: seed {} (replay with --seed {}), {:.1?}", self.seed, self.seed, self.ran_for);
        let _ = writeln!(out, "\n| workload | outcome (first answer) | operations | resolved by invoking again |");
        let _ = writeln!(out, "|---|---|---:|---|");
        for (workload, fates) in &self.ops {
            for (fate, n) in fates {
                let resolved = if fate == "unknown" {
                    self.resolved
                        .get(workload)
                        .map(|r| r.iter().map(|(f, n)| format!("{n} {f}")).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                let _ = writeln!(out, "| {workload} | {fate} | {n} | {resolved} |");
            }
        }
        let _ = writeln!(out, "\n| fault | injected |");
        let _ = writeln!(out, "|---|---:|");
        for (fault, n) in &self.faults {
            let _ = writeln!(out, "| {fault} | {n} |");
        }
        let _ = writeln!(out, "\n| invariant | checked | violated |");
        let _ = writeln!(out, "|---|---:|---:|");
        for (name, (checked, failed)) in &self.checks.counts {
            let _ = writeln!(out, "| {name} | {checked} | {failed} |");
        }
        let _ = writeln!(out, "\nlocks all gone {:.1?} after the workloads stopped", self.locks_gone_after);
        if !self.checks.violations.is_empty() {
            let _ = writeln!(out, "\nviolations:");
            for v in self.checks.violations.iter().take(QUOTED) {
                let _ = writeln!(out, "- {v}");
            }
            if self.checks.violations.len() > QUOTED {
                let _ = writeln!(out, "- ... and {} more", self.checks.violations.len() - QUOTED);
            }
        }
        let _ = write!(
            out,
            "\nchaos: {} ops, {} faults, {} violations",
            self.total_ops(),
            self.total_faults(),
            self.total_violations()
        );
        out
    }
}
