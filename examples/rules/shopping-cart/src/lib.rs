//! # Shopping cart: the reference's `add_items_to_cart`
//!
//! The twin of `examples/rules/shopping-cart-as` (AssemblyScript): same input, output, errors
//! and writes, so the two can serve the same `ShoppingCart` models interchangeably.
//!
//! - models: `[0]` a `ShoppingCart` (see `examples/models/shopping_cart.toml`);
//! - input: `{"items": [{"item_id": "apple", "quantity": 2, "price": 30}, ...]}`, prices in
//!   cents;
//! - for each item: `items.append(item_id)`, `quantities[item_id] += quantity`,
//!   `total_price += price * quantity`;
//! - output: `{"items": 3, "total_price": 95}`, the cart's item count and total afterwards;
//! - errors: `rejected("invalid quantity 0 for apple: must be 1 to 1000000")` (or a price
//!   outside 0 to 1000000000000), found while adding: the items added before it are not written
//!   either; `invalid_input` if the input does not have that shape (checked before anything is
//!   added).
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown -p rule-shopping-cart` (or let
//! `wasmtx_examples::rules::build_rules` do it).

use serde::{Deserialize, Serialize};
use wasmtx_guest::prelude::*;

const MAX_QUANTITY: i64 = 1_000_000;
const MAX_PRICE: i64 = 1_000_000_000_000;

/// The caller's input.
#[derive(Debug, Deserialize)]
struct AddItems {
    items: Vec<CartItem>,
}

/// One line of the input.
#[derive(Debug, Deserialize)]
struct CartItem {
    item_id: String,
    quantity: i64,
    /// The price of one item, in cents.
    price: i64,
}

/// The rule's output.
#[derive(Debug, Serialize)]
struct CartSummary {
    /// How many items the cart lists now.
    items: u32,
    /// The cart's total now.
    total_price: i64,
}

fn add_items_to_cart(ctx: &Context, input: AddItems) -> RuleResult<CartSummary> {
    let cart = ctx.model(0)?;
    let items = cart.list("items");
    let quantities = cart.dict("quantities");
    for item in input.items {
        let CartItem { item_id, quantity, price } = item;
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            return Err(reject(format!("invalid quantity {quantity} for {item_id}: must be 1 to {MAX_QUANTITY}")));
        }
        if !(0..=MAX_PRICE).contains(&price) {
            return Err(reject(format!("invalid price {price} for {item_id}: must be 0 to {MAX_PRICE}")));
        }
        items.append(item_id.as_str())?;
        let current = quantities.get_int(&item_id)?.unwrap_or(0);
        quantities.set(&item_id, current + quantity)?;
        // In range by the checks above: at most 10^18.
        cart.increment("total_price", price * quantity)?;
    }
    Ok(CartSummary { items: items.len()?, total_price: cart.get_int("total_price")? })
}

export_rule!(add_items_to_cart);
