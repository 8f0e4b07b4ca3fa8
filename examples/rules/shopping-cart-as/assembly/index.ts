// # Shopping cart: the reference's add_items_to_cart, in AssemblyScript
//
// The twin of `examples/rules/shopping-cart` (Rust): same input, output, errors and writes.
//
// - models: `[0]` a `ShoppingCart` (see `examples/models/shopping_cart.toml`);
// - input: `{"items": [{"item_id": "apple", "quantity": 2, "price": 30}, ...]}`, prices in cents;
// - for each item: `items.append(item_id)`, `quantities[item_id] += quantity`,
//   `total_price += price * quantity`;
// - output: `{"items": 3, "total_price": 95}`, the cart's item count and total afterwards;
// - errors: `rejected("invalid quantity 0 for apple: must be 1 to 1000000")` (or a price outside
//   0 to 1000000000000), found while adding: the items added before it are not written either;
//   `invalid_input` if the input does not have that shape (checked before anything is added).
//
// Build: `npm install && npm run build` (or let `wasmtx_examples::rules::build_rules` do it);
// the rule is `build/shopping_cart.wasm`.

import { Context, Json, Outcome, exportRule, ok, propagate, reject } from "wasmtx-guest";
export { run, cabi_realloc } from "wasmtx-guest/abi";

const MAX_QUANTITY: i64 = 1_000_000;
const MAX_PRICE: i64 = 1_000_000_000_000;

/** One line of the input. */
class CartItem {
  constructor(
    public itemId: string,
    public quantity: i64,
    public price: i64,
  ) {}
}

function addItemsToCart(ctx: Context, input: Json): Outcome {
  // Read the whole input first: a malformed item is `invalid_input` before anything is added.
  const lines = input.get("items").asArray();
  const items = new Array<CartItem>();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    items.push(new CartItem(line.get("item_id").asStr(), line.get("quantity").asInt(), line.get("price").asInt()));
  }
  if (ctx.failed) return propagate();

  const cart = ctx.model(0);
  const cartItems = cart.list("items");
  const quantities = cart.dict("quantities");
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (item.quantity < 1 || item.quantity > MAX_QUANTITY) {
      return reject(
        "invalid quantity " + item.quantity.toString() + " for " + item.itemId + ": must be 1 to " + MAX_QUANTITY.toString(),
      );
    }
    if (item.price < 0 || item.price > MAX_PRICE) {
      return reject("invalid price " + item.price.toString() + " for " + item.itemId + ": must be 0 to " + MAX_PRICE.toString());
    }
    cartItems.append(item.itemId);
    quantities.set(item.itemId, quantities.getInt(item.itemId, 0) + item.quantity);
    cart.increment("total_price", item.price * item.quantity);
  }

  const summary = Json.object()
    .set("items", Json.int(cartItems.len()))
    .set("total_price", Json.int(cart.getInt("total_price")));
  return ok(summary);
}

exportRule(addItemsToCart);
