"""Errors a user can cause. The CLI turns each into one line and an exit code."""

from __future__ import annotations


class FraudseqError(Exception):
    """Base class: ``exit_code`` is what the CLI returns."""

    exit_code = 1


class FileDefectError(FraudseqError):
    """A landing file cannot be trusted as a whole (contract section 2)."""


class MissingInputError(FraudseqError):
    """A needed validated day, label set or model is not there."""


class UsageError(FraudseqError):
    """A bad option value (exit code 2)."""

    exit_code = 2
