//! The bank workload (Jepsen's bank, with a marker per effect): accounts that start with the
//! same balance and exchange money in lock, optimistic and adaptive mode (the rule refuses a
//! transfer the debited account cannot pay), beside deposits from a reserve account in pipeline mode
//! (increments, which commute, so pipeline mode may apply them unlocked; the reserve alone may
//! go negative). Every transfer also appends its marker `t<id>` to the log of each account it
//! changes, so the check can say of each operation whether it applied, and how often.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context as _, Result, bail};
use rand::Rng as _;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use wasmtx::{Engine, FieldValue, Mode, ModelSchema, Scalar};

use super::exec::Call;
use super::history::{Fate, Record, idempotency_key};
use super::report::Checks;
use super::{ACTIONS, Tail, retrying};

/// The model type of the accounts.
pub const ACCOUNT: &str = "ChaosAccount";
/// The key of the reserve account deposits are drawn from.
pub const RESERVE: &str = "reserve";

/// The schema (TOML), as a user would upload it.
pub const SCHEMA: &str = r#"name = "ChaosAccount"
[fields]
balance = { type = "int", default = 0 }
log = { type = "list<str>" }
"#;

/// The schema.
///
/// # Errors
/// Never in practice (the schema is valid).
pub fn schema() -> Result<ModelSchema> {
    Ok(ModelSchema::from_toml(SCHEMA)?)
}

/// The accounts of one run.
#[derive(Debug, Clone, Copy)]
pub struct Bank {
    /// How many accounts (besides the reserve).
    pub accounts: usize,
    /// Each account's balance at the start.
    pub initial: i64,
}

/// One bank operation.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// The debited account (`None`: the reserve, in a pipeline deposit).
    pub from: Option<usize>,
    /// The credited account.
    pub to: usize,
    /// How much.
    pub amount: i64,
    /// The mode it ran in.
    pub mode: Mode,
    /// What the rule was told to do after its writes (fail, so that nothing is written).
    pub tail: Tail,
}

/// The key of account `i`.
pub fn account_key(i: usize) -> String {
    format!("a{i}")
}

impl Bank {
    /// Gives every account its initial balance and the reserve none.
    ///
    /// # Errors
    /// If the store fails.
    pub async fn seed(&self, engine: &Engine) -> Result<()> {
        for i in 0..self.accounts {
            let key = account_key(i);
            let balance = FieldValue::Scalar(Scalar::Int(self.initial));
            retrying(|| engine.set_field(ACCOUNT, &key, "balance", balance.clone())).await?;
        }
        retrying(|| engine.set_field(ACCOUNT, RESERVE, "balance", FieldValue::Scalar(Scalar::Int(0)))).await?;
        Ok(())
    }

    /// A random operation numbered `id`, and its call.
    pub fn next(&self, id: u64, rng: &mut StdRng) -> (Transfer, Call) {
        let mode = match rng.random_range(0..100) {
            0..35 => Mode::Lock,
            35..55 => Mode::Optimistic,
            55..75 => Mode::Adaptive,
            _ => Mode::Pipeline,
        };
        let to = rng.random_range(0..self.accounts);
        let from = (mode != Mode::Pipeline).then(|| {
            let other = rng.random_range(1..self.accounts);
            (to + other) % self.accounts
        });
        let amount = if from.is_some() { rng.random_range(1..=self.initial / 2) } else { rng.random_range(1..=5) };
        let tail = Tail::random(rng);
        let transfer = Transfer { from, to, amount, mode, tail };
        let call = transfer.call(id, ACTIONS[rng.random_range(0..ACTIONS.len())]);
        (transfer, call)
    }
}

impl Transfer {
    /// The probe script of the operation.
    pub fn call(&self, id: u64, action: &'static str) -> Call {
        let marker = format!("t{id}");
        let (debited, mut ops) = match self.from {
            Some(from) => (
                account_key(from),
                vec![
                    json!({"op": "transfer", "from": 0, "to": 1, "amount": self.amount}),
                    json!({"op": "append", "model": 0, "field": "log", "item": marker}),
                ],
            ),
            None => (
                RESERVE.to_owned(),
                vec![
                    json!({"op": "increment", "model": 0, "field": "balance", "delta": -self.amount}),
                    json!({"op": "increment", "model": 1, "field": "balance", "delta": self.amount}),
                ],
            ),
        };
        ops.push(json!({"op": "append", "model": 1, "field": "log", "item": marker}));
        ops.extend(self.tail.op());
        Call {
            models: vec![(ACCOUNT, debited), (ACCOUNT, account_key(self.to))],
            action,
            mode: self.mode,
            input: json!({ "ops": ops }),
            key: idempotency_key(id),
        }
    }
}

/// One account as stored at the end.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// Its balance.
    pub balance: i64,
    /// The markers of the transfers that changed it, in commit order.
    pub log: Vec<String>,
}

async fn read(engine: &Engine, key: &str) -> Result<Stored> {
    let schema = engine.model_type(ACCOUNT)?;
    let snapshot = retrying(|| engine.read_model(ACCOUNT, key)).await?;
    let balance_at = schema.field_index("balance").context("no balance field")?;
    let log_at = schema.field_index("log").context("no log field")?;
    let balance = match &snapshot.values[balance_at] {
        FieldValue::Scalar(Scalar::Int(n)) => *n,
        other => bail!("{key}.balance is {other:?}"),
    };
    let log = match &snapshot.values[log_at] {
        FieldValue::List(items) => items
            .iter()
            .map(|item| match item {
                Scalar::Str(s) => Ok(s.clone()),
                other => bail!("{key}.log holds {other:?}"),
            })
            .collect::<Result<_>>()?,
        other => bail!("{key}.log is {other:?}"),
    };
    Ok(Stored { balance, log })
}

/// Checks the final state against the history: each transfer applied once or not at all, as
/// its caller was told, on both accounts or neither; each account's balance is its initial one
/// plus the transfers its log holds; money is conserved; no account is negative.
///
/// # Errors
/// If the store cannot be read (a violation is reported in `checks`, not as an error).
pub async fn check(bank: &Bank, engine: &Engine, history: &[Record<Transfer>], checks: &mut Checks) -> Result<()> {
    let mut stored = BTreeMap::new();
    for i in 0..bank.accounts {
        stored.insert(account_key(i), read(engine, &account_key(i)).await?);
    }
    stored.insert(RESERVE.to_owned(), read(engine, RESERVE).await?);
    check_accounts(bank, &stored, history, checks)
}

/// [`check`] on accounts already read: `stored` by key, the reserve included.
///
/// # Errors
/// If the number of accounts does not fit an `i64`.
pub fn check_accounts(
    bank: &Bank,
    stored: &BTreeMap<String, Stored>,
    history: &[Record<Transfer>],
    checks: &mut Checks,
) -> Result<()> {
    let by_id: HashMap<String, &Record<Transfer>> = history.iter().map(|r| (format!("t{}", r.id), r)).collect();

    // Where each marker is, and how often.
    let mut seen: HashMap<&str, Vec<&str>> = HashMap::new();
    for (key, account) in stored {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for marker in &account.log {
            *counts.entry(marker.as_str()).or_default() += 1;
            seen.entry(marker.as_str()).or_default().push(key.as_str());
        }
        for (marker, n) in counts {
            checks.expect("bank: each transfer applied at most once", n == 1, || {
                format!("{marker} is {n} times in the log of {key}")
            });
            let touches = by_id
                .get(marker)
                .is_some_and(|r| r.op.from.map(account_key).as_deref() == Some(key) || account_key(r.op.to) == *key);
            checks.expect("bank: no marker of an unknown or foreign transfer", touches, || {
                format!("{marker} in the log of {key}, which no such transfer touches")
            });
        }
    }

    let mut expected: HashMap<String, i64> = stored.keys().map(|k| (k.clone(), bank.initial)).collect();
    expected.insert(RESERVE.to_owned(), 0);
    for record in history {
        let marker = format!("t{}", record.id);
        let where_seen = seen.get(marker.as_str()).map(Vec::as_slice).unwrap_or_default();
        let to = account_key(record.op.to);
        let credited = where_seen.contains(&to.as_str());
        let (debited_key, debited) = match record.op.from {
            Some(from) => {
                let key = account_key(from);
                let debited = where_seen.contains(&key.as_str());
                checks.expect("bank: no partial transfer", debited == credited, || {
                    format!("{marker} ({:?}) is in the log of only one of its accounts", record.op)
                });
                (key, debited)
            }
            // A deposit leaves no marker on the reserve: its credit stands for both sides.
            None => (RESERVE.to_owned(), credited),
        };
        if debited {
            *expected.entry(debited_key).or_default() -= record.op.amount;
        }
        if credited {
            *expected.entry(to).or_default() += record.op.amount;
        }
        check_fate(checks, &marker, &record.fate, debited || credited, record.op.tail);
    }

    let mut total = 0;
    for (key, account) in stored {
        total += account.balance;
        let want = expected.get(key).copied().unwrap_or_default();
        checks.expect(
            "bank: each balance is its initial one plus the transfers in its log",
            account.balance == want,
            || format!("{key} holds {} but its log accounts for {want}", account.balance),
        );
        if key != RESERVE {
            checks.expect("bank: no negative balance", account.balance >= 0, || {
                format!("{key} holds {}", account.balance)
            });
        }
    }
    let want_total = bank.initial * i64::try_from(bank.accounts)?;
    checks.expect("bank: money conserved", total == want_total, || {
        format!("the accounts hold {total}, not {want_total}")
    });
    Ok(())
}

/// Holds an operation's effect to what its caller was told.
pub fn check_fate(checks: &mut Checks, what: &str, fate: &Fate, applied: bool, tail: Tail) {
    match fate {
        Fate::Acked { .. } => {
            checks.expect("each acknowledged effect applied", applied, || {
                format!("{what} was acknowledged but is not there")
            });
            checks.expect("a rule that fails after its writes commits nothing", tail == Tail::None, || {
                format!("{what} was acknowledged although its rule ended with {tail:?}")
            });
        }
        Fate::Failed { kind, .. } => checks.expect("a failed invocation wrote nothing", !applied, || {
            format!("{what} failed ({kind}: nothing written, says the engine) but is there")
        }),
        Fate::Unknown { why } => checks.expect("every outcome known at the end", false, || {
            format!("{what}: outcome still unknown after invoking it again ({why})")
        }),
    }
}

/// The output of an acknowledged deposit or transfer is the probe's result list.
pub fn results(output: &str) -> Result<Vec<Value>> {
    Ok(serde_json::from_str(output)?)
}
