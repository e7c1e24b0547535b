"""Retriever components: dense (FAISS), BM25 (bm25s) and hybrid (reciprocal-rank fusion)."""
