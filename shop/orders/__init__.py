"""Orders: placement, the status pipeline, payments and fulfilment."""
