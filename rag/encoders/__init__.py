"""Encoders: dense bi-encoder (and, later, ColBERT token encoder and the TempScale attention patch)."""
