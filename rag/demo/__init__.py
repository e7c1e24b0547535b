"""A small demo corpus written for this project (BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv)."""

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
