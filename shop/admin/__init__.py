"""Admin screens. This first part is the audit log viewer; prices, stock and users come later."""
