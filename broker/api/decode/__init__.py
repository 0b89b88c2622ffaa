"""Requests to domain objects, validating every field on the way in (each bad field named):
`decode.lease_spec(acquire, settings)`, `decode.run_options(run, settings)`, ...

One module per kind of request: leases.py (Acquire, lease references), context.py and
camoufox.py (an Acquire's options), steps.py (Run), durations.py.
"""

from broker.api.decode.durations import bounded_duration, seconds
from broker.api.decode.leases import check_lease_ref, lease_ref_violations, lease_spec
from broker.api.decode.steps import run_options, run_options_off_loop

__all__ = [
    "bounded_duration",
    "check_lease_ref",
    "lease_ref_violations",
    "lease_spec",
    "run_options",
    "run_options_off_loop",
    "seconds",
]
