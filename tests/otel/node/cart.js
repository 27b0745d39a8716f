'use strict';
// Application code of the "node-cart" service in the OpenTelemetry exporter tests.
// Real code that really fails: the tests find the failing statement by its marker comment
// (`// THROWS:<function>`), never by a hard-coded line number, so this file may be edited freely.

function lineTotal(item) {
  return item.price * item.quantity;
}

// Totals a cart; a cart without `items` throws a TypeError while reducing them.
function checkout(cart) {
  const total = cart.items.reduce((sum, item) => sum + lineTotal(item), 0); // THROWS:checkout
  return { id: cart.id, total: Math.round(total * 100) / 100 };
}

module.exports = { checkout, lineTotal };
