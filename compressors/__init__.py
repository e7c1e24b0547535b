"""Compression of retrieved context before it reaches an LLM (summarization and semantic compression).

No compressor is implemented yet. The contract they will follow is already fixed by the evaluation: a
compressed document keeps ``meta["provenance"]``, the ``[source_id, start, end]`` character spans of
the source text it kept, so span metrics measure how much gold evidence survives compression (see
:mod:`rag.evaluate`). A compressor that calls an LLM (summarization) does so through
:mod:`rag.core.llm` (``ChatClient``, ``OpenAICompatibleClient``), as the rest of the project does.

Imports only ``rag.core`` and ``rag.encoders`` from this project.
"""
