"""The container image, really built from the Dockerfile with buildah, and really run.

Built daemonless (`buildah bud --isolation chroot`, the vfs storage driver). Where the
Dockerfile's base cannot be pulled (no Docker Hub from CI), an equivalent base is made from
Debian's packages with mmdebstrap (bookworm: Python 3.11, the same minor version), with the
host's CA bundle so that pip in the build reaches the package index as the host does, and
passed as the Dockerfile's BASE; the test says which base it used. The image then runs as
its own user, from its own entrypoint, on a read-only root filesystem.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import EVENT, REPO, curl

pytestmark = pytest.mark.slow  # the image build alone takes about a minute

IMAGE = "localhost/falco-exporter:test"
FALLBACK_BASE = "localhost/falco-exporter-base:bookworm-python3.11"


@dataclass
class Built:
    """The built image: its name, its configuration, and the base it was built on."""

    name: str
    config: dict[str, Any]
    base: str


def buildah(*args: str, timeout: float = 600) -> str:
    """Run buildah on the vfs driver (no daemon, no overlay module needed); its stdout."""
    result = subprocess.run(
        ["buildah", "--storage-driver", "vfs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"buildah {' '.join(args)}: {result.stderr[-3000:]}"
    return result.stdout.strip()


def say(request: pytest.FixtureRequest, line: str) -> None:
    """A line in pytest's own output, captured or not: which base the image was built on."""
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # the line must reach the terminal
            reporter.write_line(line)


def dockerfile_base() -> str:
    """The default of the Dockerfile's BASE argument: the digest-pinned base."""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("ARG BASE="):
            return line.split("=", 1)[1]
    raise AssertionError("the Dockerfile has no ARG BASE=")


def pullable(reference: str) -> bool:
    """Whether the pinned base can be pulled from here (quickly no, without Docker Hub)."""
    result = subprocess.run(
        ["buildah", "--storage-driver", "vfs", "pull", "--quiet", reference],
        capture_output=True,
        timeout=300,
        check=False,
    )
    return result.returncode == 0


def debian_base(folder: Path) -> str:
    """Bookworm with Python 3.11 and pip, the host's CA bundle, tagged FALLBACK_BASE."""
    rootfs = folder / "rootfs.tar"
    subprocess.run(
        [
            "mmdebstrap", "--variant=apt", "--quiet",
            "--include=python3,python3-pip,ca-certificates",
            # pip reaches the index as the host does: through the host's CAs.
            "--customize-hook=copy-in /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/",
            # An image's Python belongs to pip, as in the official images.
            '--customize-hook=rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED',
            '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
            "bookworm", str(rootfs),
        ],
        check=True,
        timeout=900,
        capture_output=True,
    )  # fmt: skip
    container = buildah("from", "scratch")
    try:
        buildah("add", container, str(rootfs), "/")
        buildah(
            "config",
            "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "LANG=C.UTF-8",
            "--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            "--cmd", "python3",
            container,
        )  # fmt: skip
        buildah("commit", "--quiet", container, FALLBACK_BASE)
    finally:
        buildah("rm", container)
    probe = buildah("from", "--pull-never", FALLBACK_BASE)
    try:
        version = buildah("run", "--isolation", "chroot", probe, "python3", "--version")
    finally:
        buildah("rm", probe)
    assert version.startswith("Python 3.11."), version  # the Dockerfile's base's minor version
    return FALLBACK_BASE


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> Iterator[Built]:
    """The image built from this checkout's Dockerfile."""
    for tool in ("buildah", "mmdebstrap", "unshare", "chroot", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} (Debian: apt-get install buildah mmdebstrap)")
    if os.geteuid() != 0:
        pytest.skip("building and running an image without a daemon needs root here")
    pinned = dockerfile_base()
    with tempfile.TemporaryDirectory() as folder:
        if pullable(pinned):
            base = pinned
            say(request, f"image base: {pinned}, pulled")
        else:
            base = debian_base(Path(folder))
            say(
                request,
                f"image base: {pinned} could not be pulled from here; built {base} with "
                "mmdebstrap (Debian bookworm, Python 3.11) and passed it as BASE",
            )
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False
        ).stdout.strip()
        buildah(
            "bud", "--isolation", "chroot", "--pull-never", "--layers=false", "--quiet",
            "--build-arg", f"BASE={base}", "--build-arg", f"REVISION={revision or 'unknown'}",
            "-t", IMAGE, str(REPO),
            timeout=1200,
        )  # fmt: skip
    inspected = json.loads(buildah("inspect", "--type", "image", IMAGE))
    try:
        yield Built(IMAGE, inspected["OCIv1"]["config"], base)
    finally:
        subprocess.run(["buildah", "--storage-driver", "vfs", "rmi", "-f", IMAGE], check=False)


def test_image_is_labelled_and_runs_as_a_numeric_non_root_user(image: Built) -> None:
    """OCI labels name it, its version and the base; the user is 65532, the entrypoint ours."""
    labels = image.config["Labels"]
    assert labels["org.opencontainers.image.title"] == "falco-exporter"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.base.name"] == image.base
    assert len(labels["org.opencontainers.image.revision"]) == 40
    assert image.config["User"] == "65532:65532"
    assert image.config["Entrypoint"] == ["falco-exporter"]


def test_image_serves_counts_and_stops_on_sigterm_read_only(image: Built) -> None:
    """As its own user, on a read-only root: serves /metrics, counts a POST as Falco sends
    it, and exits 0 on SIGTERM."""
    container = buildah("from", "--pull-never", image.name)
    try:
        root = buildah("mount", container)
        user, group = image.config["User"].split(":")
        env = dict(item.split("=", 1) for item in image.config.get("Env", []))
        command = [*image.config["Entrypoint"], "--http-input-address", "127.0.0.1:0",
                   "--listen-address", "127.0.0.1:0", "--probes-listen-address", "127.0.0.1:0",
                   "--log-format", "json"]  # fmt: skip
        # A private mount namespace: the image's root bound read-only, /proc and /dev in it.
        script = (
            'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" '
            '&& mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" '
            f'&& exec chroot --userspec={user}:{group} "$0" "$@"'
        )
        with subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, root,
             "env", "-i", *(f"{k}={v}" for k, v in env.items()), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:  # fmt: skip
            try:
                ports = serving_ports(process)
                status = (Path("/proc") / str(process.pid) / "status").read_text()
                uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
                assert uid_line.split()[1:] == [user] * 4  # every uid of the process is 65532
                mounts = (Path("/proc") / str(process.pid) / "mountinfo").read_text()
                [root_mount] = [m.split() for m in mounts.splitlines() if m.split()[4] == "/"]
                assert "ro" in root_mount[5].split(",")  # its root filesystem is read-only
                posted = curl(
                    "-o", "/dev/null", "-w", "%{http_code}",
                    "-H", "Content-Type: application/json",
                    "--data-binary", json.dumps(EVENT),
                    f"http://127.0.0.1:{ports['http_input_port']}/",
                ).stdout  # fmt: skip
                assert posted == "200"
                metrics = curl(f"http://127.0.0.1:{ports['metrics_port']}/metrics").stdout
                [sample] = [
                    line for line in metrics.splitlines() if line.startswith("falco_events{")
                ]
                assert 'k8s_pod_name="web-1"' in sample
                assert sample.endswith(" 1")
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=15) == 0
                assert "Traceback" not in (process.stderr.read() if process.stderr else "")
            finally:
                if process.poll() is None:
                    process.kill()
    finally:
        subprocess.run(["buildah", "--storage-driver", "vfs", "umount", container], check=False)
        subprocess.run(["buildah", "--storage-driver", "vfs", "rm", container], check=False)


def serving_ports(process: subprocess.Popen[str]) -> dict[str, int]:
    """Read the JSON log until `serving HTTP`; its ports (30 s at most). On the way, the
    start-up line must say that the image runs its native extras, uvloop and orjson."""
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    started: dict[str, Any] = {}
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            stderr = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"the image's process exited: {stderr[-2000:]}")
        record = json.loads(line)
        if record.get("event") == "starting falco-exporter":
            started = record
        if record.get("event") == "serving HTTP":
            assert str(started.get("event_loop")).startswith("uvloop "), started
            assert str(started.get("json_parser")).startswith("orjson "), started
            return {key: int(record[key]) for key in ("metrics_port", "http_input_port")}
    raise AssertionError("no 'serving HTTP' within 30 s")
