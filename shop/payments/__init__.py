"""Card payments through Stripe PaymentIntents: authorise at checkout, capture, cancel, refund."""
