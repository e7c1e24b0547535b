"""The HTTP service: ``rag serve`` answers queries and takes writes over one or more index bundles.

:func:`rag.service.app.create_app` builds the FastAPI app from :class:`rag.service.settings.ServiceSettings`;
``rag serve`` (:mod:`rag.cli.serving`) runs it under uvicorn. Importing this package is light: FastAPI
and the pipeline code load only when an app is created.
"""

from __future__ import annotations

__all__ = ["ServiceSettings", "create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from rag.service.app import create_app

        return create_app
    if name == "ServiceSettings":
        from rag.service.settings import ServiceSettings

        return ServiceSettings
    raise AttributeError(name)
