//! The four workloads, each implemented three ways on the same Redis key layout: through the
//! engine (a wasm rule), as one Lua script (one round trip, the lower bound), and as a
//! minimal hand-written lock protocol (`SET NX PX` pipelined with the reads, then a script
//! that writes and releases if the token still matches: two round trips). A fifth, the ledger
//! bank of `--cluster-only` (issue 12), places its accounts by ledger so that both accounts of
//! a transfer share a Redis Cluster slot. Every Redis call takes any
//! [`ConnectionLike`](redis::aio::ConnectionLike), a single server's or a cluster's; the
//! batches that seed and check models go one pipeline per hash slot, which a cluster needs.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use rand::Rng;
use rand::rngs::StdRng;
use redis::aio::ConnectionLike;
use redis::{FromRedisValue, Script, Value};
use serde_json::json;
use wasmtx::store::redis::KeyLayout;
use wasmtx::{Error, FieldType, Invocation, Mode, ModelId, ModelSchema, Outcome, Placement, PlacementKey, ScalarKind};

/// Accounts of the bank workload (and of the ledger workload: `LEDGERS × PER_LEDGER`).
pub const ACCOUNTS: usize = 1_000;
/// Ledgers of the ledger workload.
pub const LEDGERS: usize = 100;
/// Accounts per ledger.
pub const PER_LEDGER: usize = ACCOUNTS / LEDGERS;
/// Each account's opening balance.
pub const OPENING_BALANCE: i64 = 1_000;
/// Characters of the level-up workload.
pub const CHARACTERS: usize = 1_000;
/// Entries the event log keeps.
pub const KEEP: usize = 100;
/// The hand-written protocol's lock lease.
const LEASE_MS: u64 = 10_000;

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// One action incrementing one field of one model.
    HotCounter,
    /// Transfers between random pairs of 1,000 accounts, refused without funds.
    Bank,
    /// The level-up rule on random characters among 1,000.
    LevelUp,
    /// Append to a capped log and increment a counter, all on one hot model.
    Append,
    /// Transfers between two random accounts of one random ledger (`L<ledger>/<i>`), the
    /// accounts placed by ledger: the bank as a cluster can run it (not in [`Self::ALL`]).
    Ledger,
}

/// How an operation is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Impl {
    /// Through the engine, in a mode, with a group bound (lock mode).
    Engine {
        /// The mode.
        mode: Mode,
        /// `EngineConfig::max_group`.
        max_group: usize,
    },
    /// One Lua script per operation.
    Lua,
    /// The hand-written lock protocol.
    Hand,
}

impl Impl {
    /// The engine in lock mode with the default group bound.
    pub const LOCK: Self = Self::Engine { mode: Mode::Lock, max_group: 32 };

    /// A short label for tables.
    pub fn label(self) -> String {
        match self {
            Self::Engine { mode: Mode::Lock, max_group: 1 } => "engine, lock (no grouping)".into(),
            Self::Engine { mode, .. } => format!("engine, {mode}"),
            Self::Lua => "Lua script".into(),
            Self::Hand => "hand-written lock".into(),
        }
    }

    /// The name `--impls` uses.
    pub fn key(self) -> &'static str {
        match self {
            Self::Engine { mode: Mode::Lock, max_group: 1 } => "lock1",
            Self::Engine { mode, .. } => mode.as_str(),
            Self::Lua => "lua",
            Self::Hand => "hand",
        }
    }

    /// Whether this is one of the engine's rows.
    pub fn is_engine(self) -> bool {
        matches!(self, Self::Engine { .. })
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One operation's parameters.
#[derive(Debug, Clone)]
pub enum Op {
    /// Add 1 to the hot counter.
    Bump,
    /// Move `amount` from account `from` to account `to`.
    Transfer {
        /// Paying account.
        from: usize,
        /// Credited account.
        to: usize,
        /// Amount.
        amount: i64,
    },
    /// Give `exp` experience to a character.
    Gain {
        /// The character.
        character: usize,
        /// Experience points.
        exp: i64,
    },
    /// Log an event and count it.
    Log {
        /// The event.
        event: String,
    },
}

/// How an operation ended (errors aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Applied; for level-up, whether the character gained a level.
    Applied {
        /// Level gained.
        leveled: bool,
    },
    /// Refused by the business rule (insufficient funds); nothing written.
    Rejected,
}

/// What a worker did, over the whole row (warm-up included): the invariants need it all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Applied operations.
    pub applied: u64,
    /// Rejected operations.
    pub rejected: u64,
    /// Failed operations.
    pub errors: u64,
    /// Experience given by applied level-up operations.
    pub exp: i64,
    /// Levels gained.
    pub level_ups: i64,
}

impl Tally {
    /// Adds one operation's result.
    pub fn add(&mut self, op: &Op, result: &Result<Done>) {
        match result {
            Ok(Done::Applied { leveled }) => {
                self.applied += 1;
                if let Op::Gain { exp, .. } = op {
                    self.exp += exp;
                }
                self.level_ups += i64::from(*leveled);
            }
            Ok(Done::Rejected) => self.rejected += 1,
            Err(_) => self.errors += 1,
        }
    }

    /// Sums two tallies.
    pub fn merge(&mut self, other: &Self) {
        self.applied += other.applied;
        self.rejected += other.rejected;
        self.errors += other.errors;
        self.exp += other.exp;
        self.level_ups += other.level_ups;
    }
}

/// Two distinct accounts of one random ledger, as indices among `ACCOUNTS`
/// (`ledger × PER_LEDGER + i`).
pub fn ledger_pair(rng: &mut impl Rng) -> (usize, usize) {
    let ledger = rng.random_range(0..LEDGERS) * PER_LEDGER;
    let from = rng.random_range(0..PER_LEDGER);
    let to = (from + rng.random_range(1..PER_LEDGER)) % PER_LEDGER;
    (ledger + from, ledger + to)
}

/// The `Account` schema placed by ledger: the key's text before `/` picks the slot.
fn ledger_account(schema: ModelSchema) -> Result<ModelSchema> {
    let ledger = Placement::new("ledger", PlacementKey::Prefix { separator: "/".into() })?;
    Ok(schema.with_placement(Some(ledger)))
}

fn character(i: usize) -> String {
    format!("hero{i:04}")
}

/// The model schemas of the benchmark's own models.
fn hit_counter() -> Result<ModelSchema> {
    Ok(ModelSchema::builder("HitCounter").field("count", FieldType::Scalar(ScalarKind::Int)).build()?)
}

fn event_log() -> Result<ModelSchema> {
    Ok(ModelSchema::builder("EventLog")
        .field("count", FieldType::Scalar(ScalarKind::Int))
        .field("events", FieldType::List(ScalarKind::Str))
        .build()?)
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Self; 4] = [Self::HotCounter, Self::Bank, Self::LevelUp, Self::Append];

    /// The short name (`hot`, `bank`, `level`, `append`).
    pub fn name(self) -> &'static str {
        match self {
            Self::HotCounter => "hot",
            Self::Bank => "bank",
            Self::LevelUp => "level",
            Self::Append => "append",
            Self::Ledger => "ledger",
        }
    }

    /// The table heading.
    pub fn title(self) -> &'static str {
        match self {
            Self::HotCounter => "Hot counter: one action incrementing one field of one model",
            Self::Bank => "Bank transfer: random pairs of 1,000 accounts, conditional on balance",
            Self::LevelUp => "Level-up: the game character rule over 1,000 characters",
            Self::Append => "Pipeline append: append to a capped log + increment, on one hot model",
            Self::Ledger => {
                "Ledger transfer: random pairs within one of 100 ledgers of 10 accounts, accounts placed by ledger"
            }
        }
    }

    /// Parses a short name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().chain([Self::Ledger]).find(|w| w.name() == name)
    }

    /// The key of account `i` of the bank workloads.
    fn account(self, i: usize) -> String {
        match self {
            Self::Ledger => format!("L{}/{}", i / PER_LEDGER, i % PER_LEDGER),
            _ => format!("acct{i:04}"),
        }
    }

    /// The implementations measured, engine modes first. Pipeline mode only where the rule
    /// commutes (no decision on loaded state that a concurrent change could invalidate).
    pub fn impls(self) -> Vec<Impl> {
        let optimistic = Impl::Engine { mode: Mode::Optimistic, max_group: 32 };
        let pipeline = Impl::Engine { mode: Mode::Pipeline, max_group: 32 };
        match self {
            Self::HotCounter => vec![
                Impl::LOCK,
                Impl::Engine { mode: Mode::Lock, max_group: 1 },
                optimistic,
                pipeline,
                Impl::Lua,
                Impl::Hand,
            ],
            Self::Bank | Self::LevelUp | Self::Ledger => vec![Impl::LOCK, optimistic, Impl::Lua, Impl::Hand],
            Self::Append => vec![Impl::LOCK, optimistic, pipeline, Impl::Lua, Impl::Hand],
        }
    }

    /// The example rule the engine runs (a name for `RuleArtifacts::read`).
    pub fn rule(self) -> &'static str {
        match self {
            Self::HotCounter | Self::Append => "counter",
            Self::Bank | Self::Ledger => "bank_transfer",
            Self::LevelUp => "level_up",
        }
    }

    /// The model schemas the engine needs.
    ///
    /// # Errors
    /// If an example schema file is unreadable.
    pub fn models(self) -> Result<Vec<ModelSchema>> {
        let example = |file: &str| -> Result<ModelSchema> {
            let path = crate::models_dir().join(file);
            ModelSchema::from_path(&path).with_context(|| path.display().to_string())
        };
        Ok(match self {
            Self::HotCounter => vec![hit_counter()?],
            Self::Append => vec![event_log()?],
            Self::Bank => vec![example("account.toml")?],
            Self::LevelUp => vec![example("game_character.toml")?],
            Self::Ledger => vec![ledger_account(example("account.toml")?)?],
        })
    }

    /// The models the workload seeds and checks: accounts or characters.
    fn population(self) -> Vec<ModelId> {
        match self {
            Self::Bank | Self::Ledger => (0..ACCOUNTS).map(|i| ModelId::new("Account", self.account(i))).collect(),
            Self::LevelUp => (0..CHARACTERS).map(|i| ModelId::new("GameCharacter", character(i))).collect(),
            Self::HotCounter | Self::Append => Vec::new(),
        }
    }

    /// Writes the opening state under `keys` (accounts with their balance, characters at
    /// level 1 with three skills).
    ///
    /// # Errors
    /// If Redis fails.
    pub async fn seed(self, conn: &mut impl ConnectionLike, keys: &KeyLayout) -> Result<()> {
        per_slot::<Value>(conn, keys, &self.population(), |pipe, id| match self {
            Self::LevelUp => {
                pipe.cmd("HSET")
                    .arg(keys.data(id))
                    .arg(&["name", &id.key, "level", "1", "experience", "0", "health", "100"])
                    .ignore();
                pipe.cmd("HSET").arg(skills_key(keys, id)).arg(&["sword", "1", "shield", "1", "magic", "1"]).ignore();
            }
            _ => {
                pipe.cmd("HSET").arg(keys.data(id)).arg("balance").arg(OPENING_BALANCE).ignore();
            }
        })
        .await?;
        Ok(())
    }

    /// The next operation of a worker.
    pub fn next_op(self, rng: &mut StdRng, worker: usize, n: u64) -> Op {
        match self {
            Self::HotCounter => Op::Bump,
            Self::Bank => {
                let from = rng.random_range(0..ACCOUNTS);
                let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
                Op::Transfer { from, to, amount: rng.random_range(1..=200) }
            }
            Self::Ledger => {
                let (from, to) = ledger_pair(rng);
                Op::Transfer { from, to, amount: rng.random_range(1..=200) }
            }
            Self::LevelUp => Op::Gain { character: rng.random_range(0..CHARACTERS), exp: rng.random_range(100..=600) },
            Self::Append => Op::Log { event: format!("w{worker}-{n}") },
        }
    }

    // ----- the engine -----

    /// The engine invocation of an operation.
    pub fn invocation(self, op: &Op, mode: Mode) -> Invocation {
        let inv = match op {
            Op::Bump => Invocation::new("bump").model("HitCounter", "hot").input(r#"{"delta":1}"#),
            Op::Transfer { from, to, amount } => Invocation::new("transfer")
                .model("Account", self.account(*from))
                .model("Account", self.account(*to))
                .input(json!({ "amount": amount }).to_string()),
            Op::Gain { character: c, exp } => Invocation::new("level_up")
                .model("GameCharacter", character(*c))
                .input(json!({ "exp_gained": exp }).to_string()),
            Op::Log { event } => Invocation::new("log")
                .model("EventLog", "hot")
                .input(json!({ "delta": 1, "event": event, "keep": KEEP }).to_string()),
        };
        inv.mode(mode)
    }

    /// How an engine invocation ended.
    ///
    /// # Errors
    /// Any error but a rejection.
    pub fn engine_done(self, result: Result<Outcome, wasmtx::InvocationError>) -> Result<Done> {
        match result.map_err(|failed| failed.error) {
            Ok(outcome) => {
                let leveled = self == Self::LevelUp && outcome.output.starts_with("\"Leveled up");
                Ok(Done::Applied { leveled })
            }
            Err(Error::Rejected { .. }) => Ok(Done::Rejected),
            Err(e) => Err(e.into()),
        }
    }

    // ----- the Lua baseline -----

    /// One operation as one Lua script (one round trip).
    ///
    /// # Errors
    /// If Redis fails.
    pub async fn lua(self, conn: &mut impl ConnectionLike, keys: &KeyLayout, op: &Op) -> Result<Done> {
        let s = lua_scripts();
        match op {
            Op::Bump => {
                let id = ModelId::new("HitCounter", "hot");
                s.hot.key(keys.data(&id)).arg(1).invoke_async::<i64>(conn).await?;
                Ok(Done::Applied { leveled: false })
            }
            Op::Transfer { from, to, amount } => {
                let (a, b) = (ModelId::new("Account", self.account(*from)), ModelId::new("Account", self.account(*to)));
                let ok: i64 = s.bank.key(keys.data(&a)).key(keys.data(&b)).arg(amount).invoke_async(conn).await?;
                Ok(if ok == 1 { Done::Applied { leveled: false } } else { Done::Rejected })
            }
            Op::Gain { character: c, exp } => {
                let id = ModelId::new("GameCharacter", character(*c));
                let leveled: i64 = s
                    .level
                    .key(keys.data(&id))
                    .key(inventory_key(keys, &id))
                    .key(skills_key(keys, &id))
                    .arg(exp)
                    .invoke_async(conn)
                    .await?;
                Ok(Done::Applied { leveled: leveled == 1 })
            }
            Op::Log { event } => {
                let id = ModelId::new("EventLog", "hot");
                s.append
                    .key(keys.data(&id))
                    .key(events_key(keys, &id))
                    .arg(1)
                    .arg(event)
                    .arg(KEEP)
                    .invoke_async::<i64>(conn)
                    .await?;
                Ok(Done::Applied { leveled: false })
            }
        }
    }

    // ----- the hand-written lock protocol -----

    /// One operation under the hand-written lock protocol. Returns the round trips it took.
    ///
    /// # Errors
    /// If Redis fails or the lock was lost before the write.
    pub async fn hand(
        self,
        conn: &mut impl ConnectionLike,
        keys: &KeyLayout,
        op: &Op,
        rng: &mut StdRng,
    ) -> Result<(Done, u64)> {
        match op {
            Op::Bump => {
                let id = ModelId::new("HitCounter", "hot");
                let data = keys.data(&id);
                let locked = Locked::take(conn, &[keys.lock(&id, "bump")], rng, |p| {
                    p.cmd("HGET").arg(&data).arg("count");
                })
                .await?;
                let count = int_or(&locked.reads[0], 0)?;
                let mut w = Writes::default();
                w.op("HSET", &data, &["count".into(), (count + 1).to_string()]);
                locked.write(conn, w).await?;
                Ok((Done::Applied { leveled: false }, locked.round_trips + 1))
            }
            Op::Transfer { from, to, amount } => {
                let (a, b) = (ModelId::new("Account", self.account(*from)), ModelId::new("Account", self.account(*to)));
                let (da, db) = (keys.data(&a), keys.data(&b));
                let mut locks = vec![keys.lock(&a, "transfer"), keys.lock(&b, "transfer")];
                locks.sort();
                let locked = Locked::take(conn, &locks, rng, |p| {
                    p.cmd("HMGET").arg(&da).arg(&["balance", "transaction_count"]);
                    p.cmd("HMGET").arg(&db).arg(&["balance", "transaction_count"]);
                })
                .await?;
                let (ra, rb) = (list(&locked.reads[0])?, list(&locked.reads[1])?);
                let (bal_a, tx_a, bal_b, tx_b) =
                    (int_or(&ra[0], 0)?, int_or(&ra[1], 0)?, int_or(&rb[0], 0)?, int_or(&rb[1], 0)?);
                let rts = locked.round_trips + 1;
                if bal_a < *amount {
                    locked.write(conn, Writes::default()).await?;
                    return Ok((Done::Rejected, rts));
                }
                let mut w = Writes::default();
                w.op(
                    "HSET",
                    &da,
                    &[
                        "balance".into(),
                        (bal_a - amount).to_string(),
                        "transaction_count".into(),
                        (tx_a + 1).to_string(),
                    ],
                );
                w.op(
                    "HSET",
                    &db,
                    &[
                        "balance".into(),
                        (bal_b + amount).to_string(),
                        "transaction_count".into(),
                        (tx_b + 1).to_string(),
                    ],
                );
                locked.write(conn, w).await?;
                Ok((Done::Applied { leveled: false }, rts))
            }
            Op::Gain { character: c, exp } => {
                let id = ModelId::new("GameCharacter", character(*c));
                let (data, skills, inventory) = (keys.data(&id), skills_key(keys, &id), inventory_key(keys, &id));
                let locked = Locked::take(conn, &[keys.lock(&id, "level_up")], rng, |p| {
                    p.cmd("HMGET").arg(&data).arg(&["experience", "level"]);
                    p.cmd("HGETALL").arg(&skills);
                })
                .await?;
                let fields = list(&locked.reads[0])?;
                let experience = int_or(&fields[0], 0)? + exp;
                let level = int_or(&fields[1], 1)?;
                let mut w = Writes::default();
                let leveled = experience >= level * 1000;
                if leveled {
                    let new_level = level + 1;
                    w.op(
                        "HSET",
                        &data,
                        &[
                            "experience".into(),
                            experience.to_string(),
                            "level".into(),
                            new_level.to_string(),
                            "health".into(),
                            "100".into(),
                        ],
                    );
                    if new_level % 5 == 0 {
                        w.op("RPUSH", &inventory, &[format!("legendary_item_level_{new_level}")]);
                    }
                    let bonus = if new_level > 10 { 2 } else { 1 };
                    let entries = list(&locked.reads[1])?;
                    let mut improved = Vec::new();
                    for pair in entries.chunks_exact(2) {
                        improved.push(text(&pair[0])?);
                        improved.push((int_or(&pair[1], 0)? + bonus).to_string());
                    }
                    if !improved.is_empty() {
                        w.op("HSET", &skills, &improved);
                    }
                } else {
                    w.op("HSET", &data, &["experience".into(), experience.to_string()]);
                }
                locked.write(conn, w).await?;
                Ok((Done::Applied { leveled }, locked.round_trips + 1))
            }
            Op::Log { event } => {
                let id = ModelId::new("EventLog", "hot");
                let (data, events) = (keys.data(&id), events_key(keys, &id));
                let locked = Locked::take(conn, &[keys.lock(&id, "log")], rng, |p| {
                    p.cmd("HGET").arg(&data).arg("count");
                })
                .await?;
                let count = int_or(&locked.reads[0], 0)?;
                let mut w = Writes::default();
                w.op("HSET", &data, &["count".into(), (count + 1).to_string()]);
                w.op("RPUSH", &events, std::slice::from_ref(event));
                w.op("LTRIM", &events, &[format!("-{KEEP}"), "-1".into()]);
                locked.write(conn, w).await?;
                Ok((Done::Applied { leveled: false }, locked.round_trips + 1))
            }
        }
    }

    /// Round trips per operation from the server's command statistics: every engine and Lua
    /// round trip is one script call; a hand-written lock attempt is one pipeline that
    /// starts with one `SET NX` per lock (no script calls `SET`), its write one script call.
    pub fn server_round_trips(self, imp: Impl, stats: &super::server::ServerStats) -> u64 {
        match imp {
            Impl::Engine { .. } | Impl::Lua => stats.script_calls(),
            Impl::Hand => {
                let locks_per_attempt = if matches!(self, Self::Bank | Self::Ledger) { 2 } else { 1 };
                stats.calls("set") / locks_per_attempt + stats.script_calls()
            }
        }
    }

    // ----- invariants -----

    /// Checks the workload's invariant after a row, given every worker's tally. Returns what
    /// was checked, with the figures.
    ///
    /// # Errors
    /// If the invariant does not hold, or Redis fails.
    pub async fn verify(
        self,
        conn: &mut impl ConnectionLike,
        keys: &KeyLayout,
        tally: &Tally,
        imp: Impl,
        concurrency: usize,
    ) -> Result<String> {
        let applied = i64::try_from(tally.applied)?;
        match self {
            Self::HotCounter => {
                let count = hget_int(conn, &keys.data(&ModelId::new("HitCounter", "hot")), "count").await?;
                ensure!(count == applied, "count {count} but {applied} increments succeeded");
                Ok(format!("count = successes = {count}"))
            }
            Self::Bank | Self::Ledger => {
                let rows: Vec<Vec<Option<i64>>> = per_slot(conn, keys, &self.population(), |pipe, id| {
                    pipe.cmd("HMGET").arg(keys.data(id)).arg(&["balance", "transaction_count"]);
                })
                .await?;
                let total: i64 = rows.iter().map(|r| r[0].unwrap_or(0)).sum();
                let transactions: i64 = rows.iter().map(|r| r[1].unwrap_or(0)).sum();
                let negative = rows.iter().filter(|r| r[0].unwrap_or(0) < 0).count();
                let expected = OPENING_BALANCE * i64::try_from(ACCOUNTS)?;
                ensure!(total == expected, "total balance {total}, expected {expected}");
                ensure!(negative == 0, "{negative} accounts went negative");
                ensure!(transactions == 2 * applied, "{transactions} transaction counts for {applied} transfers");
                Ok(format!("Σ balance = {total} conserved; Σ transactions = 2 × {applied}"))
            }
            Self::LevelUp => {
                let rows: Vec<Vec<Option<i64>>> = per_slot(conn, keys, &self.population(), |pipe, id| {
                    pipe.cmd("HMGET").arg(keys.data(id)).arg(&["experience", "level"]);
                })
                .await?;
                let exp: i64 = rows.iter().map(|r| r[0].unwrap_or(0)).sum();
                let levels: i64 = rows.iter().map(|r| r[1].unwrap_or(1) - 1).sum();
                ensure!(exp == tally.exp, "Σ experience {exp}, but {} was given", tally.exp);
                ensure!(levels == tally.level_ups, "{levels} levels gained, {} level-ups reported", tally.level_ups);
                Ok(format!("Σ experience = given ({exp}); Σ levels gained = level-ups reported ({levels})"))
            }
            Self::Append => {
                let id = ModelId::new("EventLog", "hot");
                let count = hget_int(conn, &keys.data(&id), "count").await?;
                let len: usize = redis::cmd("LLEN").arg(events_key(keys, &id)).query_async(conn).await?;
                ensure!(count == applied, "count {count} but {applied} appends succeeded");
                // Pipeline mode trims on the length it loaded, so concurrent appends may leave a
                // few more entries than `KEEP`; every other implementation keeps exactly `KEEP`.
                let slack = if matches!(imp, Impl::Engine { mode: Mode::Pipeline, .. }) { concurrency } else { 0 };
                let want = usize::try_from(applied)?.min(KEEP);
                ensure!(
                    len >= want && len <= want + slack,
                    "log holds {len} entries, expected {want}..={}",
                    want + slack
                );
                Ok(format!("count = successes = {count}; log holds {len} entries (keeps {KEEP})"))
            }
        }
    }
}

fn skills_key(keys: &KeyLayout, id: &ModelId) -> String {
    keys.collection(id, "skills", FieldType::Dict(ScalarKind::Int)).unwrap_or_default()
}

fn inventory_key(keys: &KeyLayout, id: &ModelId) -> String {
    keys.collection(id, "inventory", FieldType::List(ScalarKind::Str)).unwrap_or_default()
}

fn events_key(keys: &KeyLayout, id: &ModelId) -> String {
    keys.collection(id, "events", FieldType::List(ScalarKind::Str)).unwrap_or_default()
}

/// `ids` grouped by hash slot, in slot order (the order of `ids` within a slot).
pub fn by_slot(ids: &[ModelId], slot: impl Fn(&ModelId) -> u16) -> Vec<Vec<&ModelId>> {
    let mut groups: std::collections::BTreeMap<u16, Vec<&ModelId>> = std::collections::BTreeMap::new();
    for id in ids {
        groups.entry(slot(id)).or_default().push(id);
    }
    groups.into_values().collect()
}

/// One pipeline per hash slot of `ids` (a cluster refuses a pipeline across slots), `add`
/// putting each model's commands in; the replies not ignored, slot after slot.
async fn per_slot<T: FromRedisValue>(
    conn: &mut impl ConnectionLike,
    keys: &KeyLayout,
    ids: &[ModelId],
    add: impl Fn(&mut redis::Pipeline, &ModelId),
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(ids.len());
    for group in by_slot(ids, |id| keys.slot(id)) {
        let mut pipe = redis::pipe();
        for id in group {
            add(&mut pipe, id);
        }
        out.extend(pipe.query_async::<Vec<T>>(conn).await?);
    }
    Ok(out)
}

async fn hget_int(conn: &mut impl ConnectionLike, key: &str, field: &str) -> Result<i64> {
    let v: Option<i64> = redis::cmd("HGET").arg(key).arg(field).query_async(conn).await?;
    Ok(v.unwrap_or(0))
}

fn int_or(value: &Value, default: i64) -> Result<i64> {
    match value {
        Value::Nil => Ok(default),
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)?.parse().map_err(|e| anyhow!("not an int: {e}")),
        other => bail!("unexpected reply {other:?}"),
    }
}

fn text(value: &Value) -> Result<String> {
    match value {
        Value::BulkString(b) => Ok(String::from_utf8(b.clone())?),
        other => bail!("unexpected reply {other:?}"),
    }
}

fn list(value: &Value) -> Result<&[Value]> {
    match value {
        Value::Array(items) => Ok(items),
        other => bail!("unexpected reply {other:?}"),
    }
}

/// The Lua baseline's scripts.
struct LuaScripts {
    hot: Script,
    bank: Script,
    level: Script,
    append: Script,
    /// The hand-written protocol's write-and-release script.
    write_release: Script,
}

fn lua_scripts() -> &'static LuaScripts {
    static SCRIPTS: OnceLock<LuaScripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| LuaScripts {
        hot: Script::new("return redis.call('HINCRBY', KEYS[1], 'count', ARGV[1])"),
        bank: Script::new(
            r"
local amount = tonumber(ARGV[1])
local balance = tonumber(redis.call('HGET', KEYS[1], 'balance') or '0')
if balance < amount then return 0 end
redis.call('HINCRBY', KEYS[1], 'balance', -amount)
redis.call('HINCRBY', KEYS[2], 'balance', amount)
redis.call('HINCRBY', KEYS[1], 'transaction_count', 1)
redis.call('HINCRBY', KEYS[2], 'transaction_count', 1)
return 1
",
        ),
        level: Script::new(
            r"
local experience = redis.call('HINCRBY', KEYS[1], 'experience', ARGV[1])
local level = tonumber(redis.call('HGET', KEYS[1], 'level') or '1')
if experience < level * 1000 then return 0 end
local new_level = level + 1
redis.call('HSET', KEYS[1], 'level', new_level, 'health', 100)
if new_level % 5 == 0 then redis.call('RPUSH', KEYS[2], 'legendary_item_level_' .. new_level) end
local bonus = 1
if new_level > 10 then bonus = 2 end
for _, skill in ipairs(redis.call('HKEYS', KEYS[3])) do redis.call('HINCRBY', KEYS[3], skill, bonus) end
return 1
",
        ),
        append: Script::new(
            r"
local count = redis.call('HINCRBY', KEYS[1], 'count', ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
return count
",
        ),
        write_release: Script::new(
            r"
local token, n = ARGV[1], tonumber(ARGV[2])
for i = 1, n do
  if redis.call('GET', KEYS[i]) ~= token then return 0 end
end
local a = 3
while a <= #ARGV do
  local argc = tonumber(ARGV[a + 2])
  redis.call(ARGV[a], KEYS[n + tonumber(ARGV[a + 1])], unpack(ARGV, a + 3, a + 2 + argc))
  a = a + 3 + argc
end
for i = 1, n do redis.call('DEL', KEYS[i]) end
return 1
",
        ),
    })
}

/// The writes of a hand-written operation: `(command, key, args)`.
#[derive(Debug, Default)]
struct Writes {
    ops: Vec<(&'static str, String, Vec<String>)>,
}

impl Writes {
    fn op(&mut self, command: &'static str, key: &str, args: &[String]) {
        self.ops.push((command, key.to_owned(), args.to_vec()));
    }
}

/// Locks taken by the hand-written protocol, with what was read under them.
struct Locked {
    locks: Vec<String>,
    token: String,
    reads: Vec<Value>,
    round_trips: u64,
}

impl Locked {
    /// `SET lock token NX PX` for every lock, pipelined with the reads, until every lock is
    /// ours: a partial success is released (one more round trip), then the attempt waits about
    /// a millisecond (jittered) and tries again. The naive waiter's loop.
    async fn take(
        conn: &mut impl ConnectionLike,
        locks: &[String],
        rng: &mut StdRng,
        reads: impl Fn(&mut redis::Pipeline),
    ) -> Result<Self> {
        let mut round_trips = 0;
        loop {
            let token = format!("{:016x}", rng.random::<u64>());
            let mut pipe = redis::pipe();
            for lock in locks {
                pipe.cmd("SET").arg(lock).arg(&token).arg("NX").arg("PX").arg(LEASE_MS);
            }
            reads(&mut pipe);
            let mut replies: Vec<Value> = pipe.query_async(conn).await?;
            round_trips += 1;
            let held: Vec<String> =
                locks.iter().zip(&replies).filter(|(_, r)| !matches!(r, Value::Nil)).map(|(l, _)| l.clone()).collect();
            if held.len() == locks.len() {
                let reads = replies.split_off(locks.len());
                return Ok(Self { locks: locks.to_vec(), token, reads, round_trips });
            }
            if !held.is_empty() {
                let partial = Self { locks: held, token, reads: Vec::new(), round_trips: 0 };
                partial.write(conn, Writes::default()).await?;
                round_trips += 1;
            }
            tokio::time::sleep(Duration::from_micros(rng.random_range(500..1_500))).await;
        }
    }

    /// Applies the writes and releases the locks if they are still ours (one round trip).
    async fn write(&self, conn: &mut impl ConnectionLike, writes: Writes) -> Result<()> {
        let mut inv = lua_scripts().write_release.prepare_invoke();
        for lock in &self.locks {
            inv.key(lock);
        }
        inv.arg(&self.token).arg(self.locks.len());
        for (i, (command, key, args)) in writes.ops.iter().enumerate() {
            inv.key(key);
            inv.arg(*command).arg(i + 1).arg(args.len());
            for a in args {
                inv.arg(a);
            }
        }
        let ok: i64 = inv.invoke_async(conn).await?;
        ensure!(ok == 1, "the hand-written lock was lost before the write");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn a_ledger_pair_is_two_accounts_of_one_ledger() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut ledgers = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let (from, to) = ledger_pair(&mut rng);
            assert_ne!(from, to);
            assert!(from < ACCOUNTS && to < ACCOUNTS);
            assert_eq!(from / PER_LEDGER, to / PER_LEDGER);
            ledgers.insert(from / PER_LEDGER);
        }
        assert_eq!(ledgers.len(), LEDGERS, "every ledger is drawn");
    }

    #[test]
    fn a_ledger_transfer_stays_in_one_slot_and_ledgers_spread_over_slots() -> Result<()> {
        let keys = KeyLayout::new("wasmtx-bench:1");
        for schema in Workload::Ledger.models()? {
            keys.place(schema.name(), schema.placement());
        }
        let ids = Workload::Ledger.population();
        assert_eq!(ids.len(), ACCOUNTS);
        assert_eq!(ids[PER_LEDGER + 3].key, "L1/3");
        for ledger in ids.chunks(PER_LEDGER) {
            let slot = keys.slot(&ledger[0]);
            assert!(ledger.iter().all(|id| keys.slot(id) == slot), "{:?} spans slots", ledger[0]);
        }
        // One pipeline per slot: whole ledgers, never more pipelines than ledgers.
        let groups = by_slot(&ids, |id| keys.slot(id));
        assert!(groups.len() > LEDGERS * 9 / 10 && groups.len() <= LEDGERS, "{} slots", groups.len());
        assert!(groups.iter().all(|g| g.len() % PER_LEDGER == 0));
        // The standalone bank's accounts are not placed: one slot each.
        let plain = KeyLayout::new("wasmtx-bench:1");
        assert_eq!(by_slot(&Workload::Bank.population()[..10], |id| plain.slot(id)).len(), 10);
        Ok(())
    }
}
