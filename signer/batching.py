"""The batched core: coalesces concurrent single signing requests into batches.

(Work in progress: the coalescer lands in the next commits.)
"""

from __future__ import annotations
