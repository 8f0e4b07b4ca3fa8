//! The hand-written lock protocol baseline: `SET NX PX` pipelined with the reads, then a
//! script that writes and releases if the token still matches (two round trips); busy locks
//! are retried every ~1 ms.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Result, ensure};
use rand::Rng;
use rand::rngs::StdRng;
use redis::aio::ConnectionLike;
use redis::{Script, Value};
use wasmtx::ModelId;
use wasmtx::store::redis::KeyLayout;

use super::keyspace::{events_key, int_or, inventory_key, list, skills_key, text};
use super::workloads::{Done, KEEP, Op, Workload, character};

/// The hand-written protocol's lock lease.
const LEASE_MS: u64 = 10_000;

impl Workload {
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
        let mut inv = write_release().prepare_invoke();
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

/// The write-and-release script: the writes, then the locks deleted, if every lock still holds
/// the token.
fn write_release() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        Script::new(
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
        )
    })
}
