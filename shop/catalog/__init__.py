"""Catalog: products, strengths, packages, monographs and search."""
