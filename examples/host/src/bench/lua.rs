//! The Lua baseline: every operation as one Lua script (one round trip, the lower bound).

use std::sync::OnceLock;

use anyhow::Result;
use redis::Script;
use redis::aio::ConnectionLike;
use wasmtx::ModelId;
use wasmtx::store::redis::KeyLayout;

use super::keyspace::{events_key, inventory_key, skills_key};
use super::workloads::{Done, KEEP, Op, Workload, character};

impl Workload {
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
}

/// The Lua baseline's scripts.
struct LuaScripts {
    hot: Script,
    bank: Script,
    level: Script,
    append: Script,
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
    })
}
