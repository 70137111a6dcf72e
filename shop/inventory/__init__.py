"""Inventory: stock lots, the stock ledger and allocation."""
