"""Ingestion: every file becomes a :class:`~radclip.io.contract.LoadedImage` and then a contract tensor."""
