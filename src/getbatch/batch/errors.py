"""Request-level errors of a batch, each carrying the HTTP status the server should answer."""


class BatchError(Exception):
    status = 400

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(BatchError):
    status = 400


class NotFound(BatchError):
    status = 404


class RangeNotSatisfiable(BatchError):
    status = 416


class HoleError(Exception):
    """An item no node could deliver after the status line, where no placeholder may stand
    (the server aborts the connection: never a well-formed shorter archive)."""
