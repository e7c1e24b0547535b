"""Trainers for the project's retrievers, and what they share (:mod:`rag.training.pairs`,
:mod:`rag.training.common`). Each trainer is a module here and a ``rag train`` command in :mod:`rag.cli`."""
