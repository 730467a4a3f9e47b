"""symphony: bulk-enqueue messages into an outbox table, safely and idempotently."""

from .api import dispatch, dispatch_batch
from .config import Settings, load_settings
from .results import Result, Status

__all__ = ["Result", "Settings", "Status", "dispatch", "dispatch_batch", "load_settings"]
__version__ = "0.1.0"
