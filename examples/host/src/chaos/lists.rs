//! The list-append workload, checked the way Elle checks Jepsen's list-append histories:
//! transactions of one to three appends and reads over one or two lists, in lock, optimistic
//! and adaptive mode (and append-only ones in pipeline mode, which appends without locks). Each
//! appended value is unique (`t<id>`, at most once per list per transaction), so the final lists
//! and every read can be traced back to the transactions that wrote them.
//!
//! The check: every acknowledged append is in its list exactly once and no failed one is; no
//! value appears twice or comes from nowhere; a transaction's appends are all there or none;
//! every read is a prefix of the final list (lists only grow); real time is respected (an append
//! acknowledged before another was sent comes first, and a read sent after an append was
//! acknowledged sees it); and the write-write, write-read and read-write dependencies between
//! the locked and optimistic transactions form no cycle (they are serializable). Pipeline
//! appends are left out of the cycle search only: they commute with everything by design.

use std::collections::{HashMap, HashSet, VecDeque};

use anyhow::{Context as _, Result, bail};
use rand::Rng as _;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use wasmtx::{Engine, FieldValue, Mode, ModelSchema, Scalar};

use super::bank::check_fate;
use super::exec::Call;
use super::history::{Fate, Record, idempotency_key};
use super::report::Checks;
use super::{ACTIONS, Tail, retrying};

/// The model type of the lists.
pub const LIST: &str = "ChaosList";

/// The schema (TOML), as a user would upload it.
pub const SCHEMA: &str = r#"name = "ChaosList"
[fields]
items = { type = "list<str>" }
"#;

/// The schema.
///
/// # Errors
/// Never in practice (the schema is valid).
pub fn schema() -> Result<ModelSchema> {
    Ok(ModelSchema::from_toml(SCHEMA)?)
}

/// One micro-operation of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mop {
    /// Append the transaction's value to list `key`.
    Append(usize),
    /// Read list `key` whole.
    Read(usize),
}

/// One transaction.
#[derive(Debug, Clone)]
pub struct ListTxn {
    /// Its micro-operations, in order.
    pub mops: Vec<Mop>,
    /// The mode it ran in.
    pub mode: Mode,
    /// What the rule was told to do after its writes.
    pub tail: Tail,
}

/// The key of list `i`.
pub fn list_key(i: usize) -> String {
    format!("l{i}")
}

/// The lists of one run.
#[derive(Debug, Clone, Copy)]
pub struct Lists {
    /// How many lists.
    pub keys: usize,
}

impl Lists {
    /// A random transaction numbered `id`, and its call.
    pub fn next(&self, id: u64, rng: &mut StdRng) -> (ListTxn, Call) {
        let first = rng.random_range(0..self.keys);
        let second = (first + rng.random_range(1..self.keys)) % self.keys;
        let keys = if rng.random_bool(0.5) { vec![first] } else { vec![first, second] };
        let mut mops = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            let key = keys[rng.random_range(0..keys.len())];
            let append = rng.random_bool(0.6) && !mops.contains(&Mop::Append(key));
            mops.push(if append { Mop::Append(key) } else { Mop::Read(key) });
        }
        let reads = mops.iter().any(|m| matches!(m, Mop::Read(_)));
        let mode = match rng.random_range(0..100) {
            0..40 => Mode::Lock,
            40..60 => Mode::Optimistic,
            60..80 => Mode::Adaptive,
            _ if reads => Mode::Lock,
            _ => Mode::Pipeline,
        };
        let txn = ListTxn { mops, mode, tail: Tail::random(rng) };
        let call = txn.call(id, ACTIONS[rng.random_range(0..ACTIONS.len())]);
        (txn, call)
    }
}

impl ListTxn {
    /// The lists it touches, in the order the rule sees them.
    pub fn keys(&self) -> Vec<usize> {
        let mut keys = Vec::new();
        for mop in &self.mops {
            let (Mop::Append(k) | Mop::Read(k)) = *mop;
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys
    }

    /// The probe script of the transaction.
    pub fn call(&self, id: u64, action: &'static str) -> Call {
        let keys = self.keys();
        let index = |k: usize| keys.iter().position(|&x| x == k).unwrap_or_default();
        let mut ops: Vec<Value> = self
            .mops
            .iter()
            .map(|mop| match *mop {
                Mop::Append(k) => {
                    json!({"op": "append", "model": index(k), "field": "items", "item": format!("t{id}")})
                }
                Mop::Read(k) => json!({"op": "list_items", "model": index(k), "field": "items"}),
            })
            .collect();
        ops.extend(self.tail.op());
        Call {
            models: keys.iter().map(|&k| (LIST, list_key(k))).collect(),
            action,
            mode: self.mode,
            input: json!({ "ops": ops }),
            key: idempotency_key(id),
        }
    }
}

async fn read(engine: &Engine, key: &str) -> Result<Vec<String>> {
    let schema = engine.model_type(LIST)?;
    let at = schema.field_index("items").context("no items field")?;
    match &retrying(|| engine.read_model(LIST, key)).await?.values[at] {
        FieldValue::List(items) => items
            .iter()
            .map(|item| match item {
                Scalar::Str(s) => Ok(s.clone()),
                other => bail!("{key} holds {other:?}"),
            })
            .collect(),
        other => bail!("{key}.items is {other:?}"),
    }
}

/// What one acknowledged read saw: the list's values committed before the transaction (its
/// own append, if it came first in the transaction, taken off).
struct Seen {
    txn: usize,
    key: usize,
    values: Vec<String>,
}

/// Checks the final lists and the reads against the history (see the module's notes).
///
/// # Errors
/// If the store cannot be read (a violation is reported in `checks`, not as an error).
pub async fn check(lists: &Lists, engine: &Engine, history: &[Record<ListTxn>], checks: &mut Checks) -> Result<()> {
    let mut finals = Vec::with_capacity(lists.keys);
    for k in 0..lists.keys {
        finals.push(read(engine, &list_key(k)).await?);
    }
    check_lists(&finals, history, checks);
    Ok(())
}

/// [`check`] on lists already read: `finals[k]` is list `k`'s values.
pub fn check_lists(finals: &[Vec<String>], history: &[Record<ListTxn>], checks: &mut Checks) {
    let keys = finals.len();
    let by_value: HashMap<String, usize> = history.iter().enumerate().map(|(i, r)| (format!("t{}", r.id), i)).collect();

    // Positions, duplicates and strangers.
    let mut position: Vec<HashMap<usize, usize>> = vec![HashMap::new(); keys];
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); keys];
    for (k, list) in finals.iter().enumerate() {
        for (at, value) in list.iter().enumerate() {
            let Some(&txn) = by_value.get(value) else {
                checks.expect("lists: no value from nowhere", false, || {
                    format!("{value} in {} was never appended", list_key(k))
                });
                continue;
            };
            let appended_here = history[txn].op.mops.contains(&Mop::Append(k));
            checks.expect("lists: no value from nowhere", appended_here, || {
                format!("{value} in {} comes from a transaction that did not append to it", list_key(k))
            });
            let fresh = position[k].insert(txn, at).is_none();
            checks.expect("lists: each append applied at most once", fresh, || {
                format!("{value} is twice in {}", list_key(k))
            });
            if fresh && appended_here {
                order[k].push(txn);
            }
        }
    }

    // Each transaction's appends: all there or none, as its caller was told.
    for (txn, record) in history.iter().enumerate() {
        let appends: Vec<usize> =
            record.op.mops.iter().filter_map(|m| if let Mop::Append(k) = m { Some(*k) } else { None }).collect();
        if appends.is_empty() {
            continue;
        }
        let present = appends.iter().filter(|&&k| position[k].contains_key(&txn)).count();
        checks.expect("lists: no partial transaction", present == 0 || present == appends.len(), || {
            format!("t{}: {present} of its {} appends are there", record.id, appends.len())
        });
        check_fate(checks, &format!("t{}", record.id), &record.fate, present > 0, record.op.tail);
    }

    // Reads: prefixes of the final lists.
    let mut seen = Vec::new();
    for (txn, record) in history.iter().enumerate() {
        let Fate::Acked { output, .. } = &record.fate else { continue };
        let Ok(results) = serde_json::from_str::<Vec<Value>>(output) else {
            checks.expect("lists: reads are prefixes of the final list", false, || {
                format!("t{}: output {output:?} is not the probe's result list", record.id)
            });
            continue;
        };
        let own = format!("t{}", record.id);
        let mut appended = HashSet::new();
        for (mop, result) in record.op.mops.iter().zip(&results) {
            match *mop {
                Mop::Append(k) => {
                    appended.insert(k);
                }
                Mop::Read(k) => {
                    let mut values: Vec<String> = result
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default();
                    if appended.contains(&k) {
                        let last_is_own = values.last() == Some(&own);
                        checks.expect("lists: a transaction reads its own append", last_is_own, || {
                            format!("t{} appended to {} then read {values:?}", record.id, list_key(k))
                        });
                        values.pop();
                    }
                    let prefix = finals[k].len() >= values.len() && finals[k][..values.len()] == values[..];
                    checks.expect("lists: reads are prefixes of the final list", prefix, || {
                        format!("t{} read {} as {values:?}, not a prefix of {:?}", record.id, list_key(k), finals[k])
                    });
                    if prefix {
                        seen.push(Seen { txn, key: k, values });
                    }
                }
            }
        }
    }

    check_real_time(history, &order, &seen, checks);
    check_serializable(history, &order, &seen, checks);
}

/// An append acknowledged before another was sent comes first in its list; a read sent after an
/// append was acknowledged sees it.
fn check_real_time(history: &[Record<ListTxn>], order: &[Vec<usize>], seen: &[Seen], checks: &mut Checks) {
    for (k, txns) in order.iter().enumerate() {
        let mut latest_start: Option<usize> = None;
        for &txn in txns {
            if let Some(earlier) = latest_start {
                let (a, b) = (&history[earlier], &history[txn]);
                checks.expect("lists: appends in real-time order", b.end > a.start, || {
                    format!("t{} was acknowledged before t{} was sent, yet follows it in {}", b.id, a.id, list_key(k))
                });
            }
            if latest_start.is_none_or(|e| history[txn].start > history[e].start) {
                latest_start = Some(txn);
            }
        }
    }
    for read in seen {
        let reader = &history[read.txn];
        let missed = order[read.key][read.values.len()..]
            .iter()
            .filter(|&&t| t != read.txn)
            .find(|&&t| history[t].end < reader.start);
        checks.expect("lists: a read sees every append acknowledged before it was sent", missed.is_none(), || {
            format!(
                "t{} read {} without t{}, acknowledged before the read was sent",
                reader.id,
                list_key(read.key),
                missed.map(|&t| history[t].id).unwrap_or_default()
            )
        });
    }
}

/// The dependency graph of the locked and optimistic transactions has no cycle.
fn check_serializable(history: &[Record<ListTxn>], order: &[Vec<usize>], seen: &[Seen], checks: &mut Checks) {
    let in_graph = |t: usize| history[t].op.mode != Mode::Pipeline;
    let mut edges: HashSet<(usize, usize)> = HashSet::new();
    for txns in order {
        let members: Vec<usize> = txns.iter().copied().filter(|&t| in_graph(t)).collect();
        edges.extend(members.windows(2).map(|w| (w[0], w[1])));
    }
    for read in seen {
        if !in_graph(read.txn) {
            continue;
        }
        let list = &order[read.key];
        let cut = read.values.len();
        // The last writer it saw, and the first it did not (both among graph members).
        if let Some(&w) = list[..cut].iter().rev().find(|&&t| in_graph(t) && t != read.txn) {
            edges.insert((w, read.txn));
        }
        if let Some(&w) = list[cut..].iter().find(|&&t| in_graph(t) && t != read.txn) {
            edges.insert((read.txn, w));
        }
    }
    // Kahn's algorithm: what is left once every node without predecessors is peeled is cyclic.
    let mut indegree: HashMap<usize, usize> = HashMap::new();
    let mut next: HashMap<usize, Vec<usize>> = HashMap::new();
    for &(a, b) in &edges {
        if a == b {
            continue;
        }
        *indegree.entry(b).or_default() += 1;
        indegree.entry(a).or_default();
        next.entry(a).or_default().push(b);
    }
    let mut ready: VecDeque<usize> = indegree.iter().filter(|&(_, &d)| d == 0).map(|(&n, _)| n).collect();
    let mut peeled = 0;
    while let Some(n) = ready.pop_front() {
        peeled += 1;
        for &m in next.get(&n).map(Vec::as_slice).unwrap_or_default() {
            let d = indegree.entry(m).or_default();
            *d -= 1;
            if *d == 0 {
                ready.push_back(m);
            }
        }
    }
    let cyclic: Vec<u64> = indegree.iter().filter(|&(_, &d)| d > 0).map(|(&n, _)| history[n].id).take(8).collect();
    checks.expect("lists: locked and optimistic transactions serializable", peeled == indegree.len(), || {
        format!("{} transactions in dependency cycles, among them t{cyclic:?}", indegree.len() - peeled)
    });
}
