"""Compression of retrieved context before it reaches an LLM (summarization and semantic compression).

No compressor is implemented yet. The contract they will follow is already fixed by the evaluation: a
compressed document keeps ``meta["provenance"]``, the ``[source_id, start, end]`` character spans of
the source text it kept, so span metrics measure how much gold evidence survives compression (see
:mod:`rag.evaluate`).
"""
