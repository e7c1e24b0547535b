"""Compression of retrieved context before it reaches an LLM, as Haystack components and ``compress``
stages (:mod:`compressors.stages`):

- :class:`~compressors.semantic.SemanticCompressor`: TCRA-LLM's word impact (drop the words whose
  removal moves the sentence embedding least);
- :class:`~compressors.extractive.ExtractiveCompressor`: keep the sentences most similar to the query;
- :class:`~compressors.abstractive.AbstractiveCompressor`: a query-focused summary by an LLM (no
  provenance);
- :class:`~compressors.random_drop.RandomCompressor`: random words, the baseline.

The shared contract (target ``ratio`` / ``budget``, word units, ``meta["provenance"]`` spans that
:mod:`rag.evaluate` scores, token accounting in ``meta["compression"]``) is in :mod:`compressors.base`.
A compressor that calls an LLM does so through :mod:`rag.core.llm` or the local model of
:mod:`rag.generation.local`.
"""
