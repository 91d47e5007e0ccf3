"""The spool: Falco's file_output, read from an offset, and freed behind what is committed.

Falco appends one JSON line per alert (one write each, O_APPEND). Reading needs no
coordination with that writer: only whole lines are taken (a line still being written
waits for its newline), and the offset is the first byte not yet taken. What is committed
is given back to the filesystem by punching a hole (FALLOC_FL_PUNCH_HOLE, keeping the
size), so the file's logical size grows while its blocks stay few; holes read as NUL
bytes, which are skipped. The file being truncated (its size below our offset) or
replaced (another inode at the path: Falco or a person recreated it) is noticed here and
said; what to count then is the input's decision (input.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from dataclasses import dataclass

# One read: bounded memory and time per step, whatever the backlog.
READ_BYTES = 256 * 1024
# The longest line taken (as the HTTP input's largest body); a longer one is skipped.
MAX_LINE = 1024 * 1024
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
_BLOCK = 4096


class FileInputError(Exception):
    """The spool cannot be opened at all; str() names the path and why (exit 2)."""


@dataclass(frozen=True)
class FileIdentity:
    """Which file: its device and inode (a path can name another file later)."""

    device: int
    inode: int

    @classmethod
    def of(cls, status: os.stat_result) -> FileIdentity:
        """The identity in a stat result."""
        return cls(status.st_dev, status.st_ino)


@dataclass
class Lines:
    """What one read gave: whole lines, and how many over-long ones were skipped."""

    lines: list[bytes]
    too_long: int = 0


def _libc_fallocate() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    function = getattr(ctypes.CDLL(name, use_errno=True), "fallocate", None)
    if function is not None:
        function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)
    return function


_FALLOCATE = _libc_fallocate()


def _punching_refused(directory: str) -> str:
    """Why this directory's filesystem frees no holes ("" if it does), tried on a scratch
    file: said at start-up rather than found at the first commit."""
    if _FALLOCATE is None:
        return "this C library has no fallocate"
    scratch = os.path.join(directory, f".punch-check-{os.getpid()}")
    try:
        descriptor = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as error:
        return f"no scratch file could be made beside it ({error.strerror})"
    try:
        os.write(descriptor, b"\n" * _BLOCK)
        mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
        if _FALLOCATE(descriptor, mode, 0, _BLOCK) != 0:
            return f"the filesystem refuses hole punching ({os.strerror(ctypes.get_errno())})"
        return ""
    finally:
        os.close(descriptor)
        os.unlink(scratch)


class Spool:
    """One open spool file, read from `offset` in whole lines."""

    def __init__(self, path: str, offset: int = 0) -> None:
        """Open (creating it, writable by Falco's container, if missing). OSError if it
        cannot be read; a file we may read but not write is read without freeing it."""
        self.path = path
        self.punch_problem = ""  # why holes are not punched, if they are not
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileInputError(
                f"the folder {folder!r} does not exist (the volume Falco's file_output and "
                "the exporter share is not mounted there?)"
            )
        if os.path.isdir(path):
            raise FileInputError(f"{path!r} is a folder, not the file Falco writes")
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            # Falco's container may run without CAP_DAC_OVERRIDE: it must be able to append.
            os.fchmod(self._fd, 0o666)
        except PermissionError:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            self.punch_problem = "the file is not writable by this process (Falco created it)"
        self.identity = FileIdentity.of(os.fstat(self._fd))
        self.offset = offset  # the first byte not yet taken
        self._read_at = offset  # the next byte to read (past a partial line held)
        self._partial = b""
        self._skipping = False  # inside a line longer than MAX_LINE
        self.punched_to = 0
        if not self.punch_problem:
            self.punch_problem = _punching_refused(os.path.dirname(os.path.abspath(path)))

    @property
    def size(self) -> int:
        """The file's logical size now (once closed: the offset read to)."""
        return os.fstat(self._fd).st_size if self._fd >= 0 else self.offset

    def replaced(self) -> bool:
        """True when the path now names another file, or none."""
        try:
            return FileIdentity.of(os.stat(self.path)) != self.identity
        except FileNotFoundError:
            return True

    def truncated(self) -> bool:
        """True when the file is shorter than what was read of it."""
        return self.size < self._read_at

    def restart(self) -> None:
        """Read again from the start (after a truncation)."""
        self.offset = self._read_at = self.punched_to = 0
        self._partial = b""
        self._skipping = False

    def read(self) -> Lines | None:
        """The whole lines of the next read (holes skipped); None at the end of the file."""
        if not self._partial and not self._skip_hole():
            return None
        chunk = os.pread(self._fd, READ_BYTES, self._read_at)
        if not chunk:
            return None
        self._read_at += len(chunk)
        data = self._partial + chunk
        start = len(self._partial)
        self._partial = b""
        taken = Lines([])
        position = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            line = data[position:end]
            if self._skipping:
                self._skipping = False
            elif line.strip(b"\0 \t\r"):
                taken.lines.append(line.lstrip(b"\0"))
            position = start = end + 1
        rest = data[position:]
        if self._skipping:
            rest = b""  # still inside the over-long line: dropped as it comes
        elif len(rest) > MAX_LINE:
            taken.too_long += 1
            self._skipping = True
            rest = b""
        rest = rest.lstrip(b"\0")  # a hole is nothing to hold
        self._partial = rest
        self.offset = self._read_at - len(rest)
        return taken

    def _skip_hole(self) -> bool:
        """Move past a hole (SEEK_DATA), so that a freed gigabyte is never read as zeros;
        False when no data follows."""
        try:
            data_at = os.lseek(self._fd, self._read_at, os.SEEK_DATA)
        except OSError as error:
            # ENXIO: only a hole, or nothing, to the end. Another error: a filesystem without
            # SEEK_DATA, whose zeros are skipped as they are read.
            return error.errno != errno.ENXIO
        if data_at > self._read_at:
            self.offset = self._read_at = data_at
        return True

    def unfinished(self) -> bytes:
        """The partial line held (a write in progress, or torn by a crash)."""
        return self._partial

    def free(self, committed: int) -> None:
        """Punch a hole over whole blocks before `committed`; on refusal, say so once."""
        end = committed - committed % _BLOCK
        if self.punch_problem or _FALLOCATE is None or end <= self.punched_to:
            return
        mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
        if _FALLOCATE(self._fd, mode, self.punched_to, end - self.punched_to) != 0:
            code = ctypes.get_errno()
            if code in {errno.EOPNOTSUPP, errno.ENOSYS, errno.EPERM, errno.EBADF, errno.EACCES}:
                self.punch_problem = f"the filesystem refuses hole punching ({os.strerror(code)})"
                return
            raise OSError(code, os.strerror(code), self.path)
        self.punched_to = end

    def allocated(self) -> int:
        """Bytes of disk the file holds now (its blocks); 0 once closed."""
        return os.fstat(self._fd).st_blocks * 512 if self._fd >= 0 else 0

    def close(self) -> None:
        """Close the file (once)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
