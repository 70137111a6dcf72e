"""The cart and the prescription gate."""
