"""Errors that cross modules: what a command turns into an exit status and one log line."""

from __future__ import annotations


class CertificateFilesError(Exception):
    """A certificate, key or CA file could not be read or used; the message names it."""
