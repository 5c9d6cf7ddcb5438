"""Keeps secret values out of a task's output: every value read with
dbutils.secrets is replaced by [REDACTED] in what the task prints, and in
the error it reports, as Databricks does."""

import sys

REDACTED = "[REDACTED]"
_values = set()


def register(value):
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return
    if value:
        _values.add(value)


def scrub(text):
    if not _values or not text:
        return text
    # Longest first, so a value that contains another is replaced whole.
    for v in sorted(_values, key=len, reverse=True):
        text = text.replace(v, REDACTED)
    return text


class RedactingStream:
    def __init__(self, stream):
        self._stream = stream

    def write(self, s):
        return self._stream.write(scrub(s))

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        return self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def install():
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
