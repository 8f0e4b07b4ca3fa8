//! # Bank transfer: a conditional move of money between two accounts
//!
//! Shows the basic shape of a wasmtx rule: a typed input, models opened by their position in
//! the invocation, a business refusal with [`reject`], and [`Model::increment`] for every
//! change, so the rule also runs in pipeline mode, where increments commute.
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

fn bank_transfer(ctx: &Context, input: Transfer) -> RuleResult<String> {
    let amount = input.amount;
    if amount <= 0 {
        return Err(invalid_input(format!(
            "amount must be positive, got {amount}"
        )));
    }
    let from = ctx.model(0)?;
    let to = ctx.model(1)?;

    if from.get_int("balance")? < amount {
        return Err(reject("Insufficient funds"));
    }
    from.increment("balance", -amount)?;
    to.increment("balance", amount)?;
    from.increment("transaction_count", 1)?;
    to.increment("transaction_count", 1)?;

    Ok(format!("Transferred {amount} successfully"))
}

export_rule!(bank_transfer);
