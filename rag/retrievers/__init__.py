"""Retriever components: dense (FAISS) and BM25 (bm25s); hybrid is built in the pipeline from both
(:mod:`rag.retrievers.stages`), with :class:`rag.retrievers.ranking.RankCutoff` after the fusion."""
