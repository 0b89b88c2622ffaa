"""Steps on Playwright: one module of handlers per kind of step, as in broker.model.steps;
dispatch.py holds the table they are declared in and what a handler is given.

Importing the package imports every module of handlers, so the table is complete.
"""

from broker.engines.playwright.steps import input, navigation, pages, reading, storage, waits
from broker.engines.playwright.steps.dispatch import HANDLERS, StepScope, frame_of, perform

__all__ = [
    "HANDLERS",
    "StepScope",
    "frame_of",
    "input",
    "navigation",
    "pages",
    "perform",
    "reading",
    "storage",
    "waits",
]
