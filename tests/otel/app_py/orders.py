"""Application code of the "py-shop" service in the OpenTelemetry exporter tests.

Real code that really fails: the tests find the failing statements by their marker comments
(``# RAISES:<function>``), never by hard-coded line numbers, so this file may be edited freely.
"""


def line_total(item):
    return item["price"] * item["quantity"]


def place_order(items, installments):
    """Splits an order's total into equal installments; 0 installments divides by zero."""
    subtotal = sum(line_total(item) for item in items)
    per_installment = subtotal / installments  # RAISES:place_order
    return round(per_installment, 2)


def refund_order(order_id, ledger):
    """Refunds a recorded order; an unknown id raises KeyError."""
    entry = ledger[order_id]  # RAISES:refund_order
    return -entry["amount"]
