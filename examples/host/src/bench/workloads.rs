//! The four workloads of the tables (and the ledger bank of `--cluster-only`): what each
//! operation is, the models and rule the engine runs for it, and how an engine outcome ends.
//! The same operations are carried out by the baselines ([`super::lua`], [`super::hand`])
//! on the same Redis key layout; [`super::state`] seeds the models and checks the
//! invariants, [`super::impls`] lists the implementations a row can measure.

use std::fmt;

use anyhow::{Context as _, Result};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;
use wasmtx::{Error, FieldType, Invocation, Mode, ModelId, ModelSchema, Outcome, Placement, PlacementKey, ScalarKind};

use super::impls::Impl;

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

pub(super) fn character(i: usize) -> String {
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
    pub(super) fn account(self, i: usize) -> String {
        match self {
            Self::Ledger => format!("L{}/{}", i / PER_LEDGER, i % PER_LEDGER),
            _ => format!("acct{i:04}"),
        }
    }

    /// The `--impls` keys of the implementations measured, in table order: engine
    /// configurations first ([`super::impls::ENGINES`]), then the baselines. Pipeline mode only
    /// where the rule commutes (no decision on loaded state that a concurrent change could
    /// invalidate); the snapshot cache's cold and multi-engine rows where models are many.
    pub fn impl_keys(self) -> &'static [&'static str] {
        match self {
            Self::HotCounter => &["lock", "lock1", "optimistic", "adaptive", "pipeline", "lua", "hand"],
            Self::Bank => &[
                "lock",
                "optimistic",
                "optimistic-cold",
                "optimistic-2e",
                "optimistic-2e-tracking",
                "adaptive",
                "adaptive-2e",
                "adaptive-2e-tracking",
                "lua",
                "hand",
            ],
            Self::LevelUp => &["lock", "optimistic", "optimistic-cold", "adaptive", "lua", "hand"],
            Self::Ledger => &["lock", "optimistic", "lua", "hand"],
            Self::Append => &["lock", "optimistic", "pipeline", "lua", "hand"],
        }
    }

    /// The implementations measured ([`Self::impl_keys`]).
    pub fn impls(self) -> Vec<Impl> {
        self.impl_keys().iter().filter_map(|k| Impl::parse(k)).collect()
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
    pub(super) fn population(self) -> Vec<ModelId> {
        match self {
            Self::Bank | Self::Ledger => (0..ACCOUNTS).map(|i| ModelId::new("Account", self.account(i))).collect(),
            Self::LevelUp => (0..CHARACTERS).map(|i| ModelId::new("GameCharacter", character(i))).collect(),
            Self::HotCounter | Self::Append => Vec::new(),
        }
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

    /// Round trips per operation from the server's command statistics: every engine and Lua
    /// round trip is one script call; a hand-written lock attempt is one pipeline that
    /// starts with one `SET NX` per lock (no script calls `SET`), its write one script call.
    pub fn server_round_trips(self, imp: Impl, stats: &super::server::ServerStats) -> u64 {
        match imp {
            Impl::Engine(_) | Impl::Lua => stats.script_calls(),
            Impl::Hand => {
                let locks_per_attempt = if matches!(self, Self::Bank | Self::Ledger) { 2 } else { 1 };
                stats.calls("set") / locks_per_attempt + stats.script_calls()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use wasmtx::store::redis::KeyLayout;

    use super::super::keyspace::by_slot;
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
