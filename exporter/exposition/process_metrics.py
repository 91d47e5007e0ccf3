"""The process' own metrics (`process_*`, `python_info`), as Prometheus' client libraries name them.

Read from /proc at scrape time, as the Go exporter's were; where /proc is missing
(not Linux), the samples that need it are left out and the rest still render.
"""

from __future__ import annotations

import os
import platform
import resource
import time

from exporter.exposition.text import Family

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


def process_families() -> list[Family]:
    """CPU, memory, file descriptors and start time of this process, and the Python that runs it."""
    families = []
    times = os.times()
    cpu = Family("process_cpu_seconds", "counter", "Total user and system CPU time in seconds.")
    cpu.add((), times.user + times.system)
    families.append(cpu)
    fields = _stat_fields()
    if fields is not None:
        virtual = Family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
        virtual.add((), int(fields[20]))
        resident = Family(
            "process_resident_memory_bytes", "gauge", "Resident memory size in bytes."
        )
        resident.add((), int(fields[21]) * _PAGE_SIZE)
        families += [virtual, resident]
    start = Family(
        "process_start_time_seconds", "gauge", "Start time of the process since the epoch."
    )
    start.add((), _START_TIME)
    families.append(start)
    try:
        open_fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = -1
    if open_fds >= 0:
        fds = Family("process_open_fds", "gauge", "Number of open file descriptors.")
        fds.add((), open_fds)
        families.append(fds)
    max_fds = Family("process_max_fds", "gauge", "Maximum number of open file descriptors.")
    max_fds.add((), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    families.append(max_fds)
    families.append(_python_info())
    return families


def _python_info() -> Family:
    info = Family(
        "python_info",
        "gauge",
        "Python platform information",
        ("implementation", "major", "minor", "patchlevel", "version"),
    )
    major, minor, patch = platform.python_version_tuple()
    info.add((platform.python_implementation(), major, minor, patch, platform.python_version()), 1)
    return info
