"""Errors raised while turning a serve group into a recipe."""

from __future__ import annotations

from infersweep.faults.errors import InfersweepError


class RecipeError(InfersweepError, ValueError):
    """A serve group cannot be turned into a correct recipe; the message names the group and the fix."""

    kind = "config_error"
    transient = False


class UnsupportedFrameworkError(RecipeError):
    """The group's framework has no recipe builder here."""


class MissingQuirkError(RecipeError):
    """The group asks for something (e.g. speculative decoding) that only model quirks can supply."""
