"""The process' own metrics (`process_*`, `python_info`), as Prometheus' client libraries name them.

Read from /proc at scrape time, as the Go exporter's were; where /proc is missing
(not Linux), the samples that need it are left out and the rest still render.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import time

from exporter.core.metrics import Families, FamilySpec, Kind

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields() -> list[str] | None:
    """/proc/self/stat after the command name (which may hold spaces), or None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()
    except OSError:
        return None


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            for line in stat:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _start_time() -> float:
    """When the process started, as Unix time (when this module loaded, without /proc)."""
    fields, boot = _stat_fields(), _boot_time()
    if fields is None or boot is None:
        return time.time()
    return boot + int(fields[19]) / _TICKS  # field 22 of stat(5), counted after the name


_START_TIME = _start_time()


_CPU = FamilySpec("process_cpu_seconds", Kind.COUNTER, "Total user and system CPU time in seconds.")
_VIRTUAL = FamilySpec("process_virtual_memory_bytes", Kind.GAUGE, "Virtual memory size in bytes.")
_RESIDENT = FamilySpec(
    "process_resident_memory_bytes", Kind.GAUGE, "Resident memory size in bytes."
)
_START = FamilySpec(
    "process_start_time_seconds", Kind.GAUGE, "Start time of the process since the epoch."
)
_OPEN_FDS = FamilySpec("process_open_fds", Kind.GAUGE, "Number of open file descriptors.")
_MAX_FDS = FamilySpec("process_max_fds", Kind.GAUGE, "Maximum number of open file descriptors.")
_PYTHON = FamilySpec(
    "python_info",
    Kind.GAUGE,
    "Python platform information",
    ("implementation", "major", "minor", "patchlevel", "version"),
)


def collect_process(families: Families) -> None:
    """CPU, memory, file descriptors and start time of this process, and the Python that runs it."""
    times = os.times()
    families.add(_CPU, (), times.user + times.system)
    fields = _stat_fields()
    if fields is not None:
        families.add(_VIRTUAL, (), int(fields[20]))
        families.add(_RESIDENT, (), int(fields[21]) * _PAGE_SIZE)
    families.add(_START, (), _START_TIME)
    with contextlib.suppress(OSError):  # no /proc: not Linux
        families.add(_OPEN_FDS, (), len(os.listdir("/proc/self/fd")))
    families.add(_MAX_FDS, (), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    major, minor, patch = platform.python_version_tuple()
    version = (platform.python_implementation(), major, minor, patch, platform.python_version())
    families.add(_PYTHON, version, 1)
