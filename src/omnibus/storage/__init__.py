"""omnibus.storage: segmented append-only logs of Kafka v2 record batches, shared by every protocol.

Strategy and rules live in each module: records.py (batch format), index.py and segment.py (files),
log.py (the Log), loader.py (recovery), sync.py (group commit), files.py (sendfile), acks.py (queue
consumption state), check.py (offline verification). This package imports nothing else of ours and
never uses asyncio: the server bridges it with ``Syncer(dispatch=loop.call_soon_threadsafe)`` and runs
the calls marked "blocks" in an executor.
"""

from .files import FileRegion, RegionGoneError, send_region
from .log import (
    AppendResult,
    Log,
    LogClosedError,
    LogConfig,
    LogFailedError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    SegmentInfo,
)
from .records import (
    BatchHeader,
    CorruptBatchError,
    Record,
    StorageError,
    UnsupportedCompressionError,
    build_batch,
    decode_records,
    patch_base_offset,
    set_log_append_time,
    validate_batch,
)
from .sync import Syncer

__all__ = [
    "AppendResult",
    "BatchHeader",
    "CorruptBatchError",
    "FileRegion",
    "Log",
    "LogClosedError",
    "LogConfig",
    "LogFailedError",
    "OffsetOutOfRangeError",
    "Record",
    "RecordTooLargeError",
    "RegionGoneError",
    "SegmentInfo",
    "StorageError",
    "Syncer",
    "UnsupportedCompressionError",
    "build_batch",
    "decode_records",
    "patch_base_offset",
    "send_region",
    "set_log_append_time",
    "validate_batch",
]
