//! The workloads' state in Redis: seeding the opening state before a row, and checking the
//! invariant after it (money conserved, counter = successes, ...).

use anyhow::{Result, ensure};
use redis::Value;
use redis::aio::ConnectionLike;
use wasmtx::store::redis::KeyLayout;
use wasmtx::{Mode, ModelId};

use super::impls::Impl;
use super::keyspace::{events_key, hget_int, per_slot, skills_key};
use super::workloads::{ACCOUNTS, KEEP, OPENING_BALANCE, Tally, Workload};

impl Workload {
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
                let slack = if imp.engine().is_some_and(|e| e.mode == Mode::Pipeline) { concurrency } else { 0 };
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
