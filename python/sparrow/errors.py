"""Exceptions raised for the statuses of the C library, carrying its message."""
from . import _lib


class SparrowError(Exception):
    """A call into the sparrow library failed; str(e) is the library's message."""
    status = None


class BadInputError(SparrowError, ValueError):
    """Malformed data, a bad parameter or a bad model file (SPR_STATUS_BAD_INPUT)."""
    status = 1


class SparrowIOError(SparrowError, OSError):
    """A file could not be opened, read, written or renamed (SPR_STATUS_IO_ERROR)."""
    status = 2


class SparrowMemoryError(SparrowError, MemoryError):
    """An allocation failed (SPR_STATUS_NO_MEMORY)."""
    status = 3


class InternalError(SparrowError, RuntimeError):
    """A bug in sparrow (SPR_STATUS_INTERNAL)."""
    status = 4


_BY_STATUS = {1: BadInputError, 2: SparrowIOError, 3: SparrowMemoryError, 4: InternalError}


def check(status):
    """Raises the exception of a non-zero status with the thread's last C message.

    spr_last_error is per thread, and ctypes calls run on the calling thread, so the
    message read here is the one of the call that just failed."""
    if status == 0:
        return
    message = _lib.spr_last_error().decode("utf-8", "replace")
    kind = _lib.spr_status_to_string(status).decode()
    raise _BY_STATUS.get(status, SparrowError)("%s (%s)" % (message or "failed", kind))
