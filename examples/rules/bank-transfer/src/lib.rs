//! # Bank transfer: a conditional move of money between two accounts
//!
//! Shows the basic shape of a wasmtx rule on typed models: a typed input, two models loaded as
//! a plain struct by their position in the invocation ([`Context::load`]), a business refusal
//! with [`reject`], and [`Counter`] fields, which [`Tracked::save`] writes back as increments,
//! so the rule also runs in pipeline mode, where increments commute.
//!
//! - models: `[0]` the account to debit, `[1]` the account to credit (both `Account`, see
//!   `examples/models/account.toml`);
//! - input: `{"amount": 25}`, a positive integer;
//! - output: `"Transferred 25 successfully"`, or the error `rejected("Insufficient funds")`.
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown -p rule-bank-transfer`
//! (or let `wasmtx_examples::rules::build_rules` do it); the rule is
//! `target/wasm32-unknown-unknown/release/rule_bank_transfer.wasm` under the target directory.

use serde::Deserialize;
use wasmtx_guest::prelude::*;

/// The caller's input.
#[derive(Debug, Deserialize)]
struct Transfer {
    /// How much to move, in the accounts' unit.
    amount: i64,
}

/// The fields of an `Account` a transfer uses (it leaves `account_holder` alone).
#[derive(Debug, Model)]
struct Account {
    balance: Counter,
    transaction_count: Counter,
}

fn bank_transfer(ctx: &Context, input: Transfer) -> RuleResult<String> {
    let amount = input.amount;
    if amount <= 0 {
        return Err(invalid_input(format!("amount must be positive, got {amount}")));
    }
    let mut from = ctx.load::<Account>(0)?;
    let mut to = ctx.load::<Account>(1)?;

    if from.balance < amount {
        return Err(reject("Insufficient funds"));
    }
    from.balance -= amount;
    to.balance += amount;
    from.transaction_count += 1;
    to.transaction_count += 1;
    from.save()?;
    to.save()?;

    Ok(format!("Transferred {amount} successfully"))
}

export_rule!(bank_transfer);
