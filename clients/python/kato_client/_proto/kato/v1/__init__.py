"""Generated code for package kato.v1 (make proto)."""
