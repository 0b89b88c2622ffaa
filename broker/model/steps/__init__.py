"""Browser steps a Run executes, one module per kind of step; base.py holds what they share
and the registry of step kinds.

Importing the package imports every module that declares a step kind, so the registry
(`base.KINDS_BY_NAME`) is complete wherever a step can be made.
"""

from broker.model.steps import input, navigation, pages, reading, storage, waits

__all__ = ["input", "navigation", "pages", "reading", "storage", "waits"]
