"""The one exception type that reaches users: a problem with their input, reported as one line."""


class VqclipError(Exception):
    """A problem the user can fix (bad input, missing file, unknown name); the CLI prints it and exits 2."""


class UnsafeCheckpointError(VqclipError):
    """A checkpoint whose unpickling would call something other than tensor/collection rebuilding."""
