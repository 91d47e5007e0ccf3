"""The container image, really built for amd64 and arm64 as `make image` builds it, and
really run on both.

Built daemonless by tools/build_image.py (what `make image` runs) on buildah's vfs storage
driver with chroot isolation: each architecture from the same Dockerfile, joined in one
manifest list, each with its CycloneDX SBOM. Where the Dockerfile's base cannot be pulled (no
Docker Hub from CI), an equivalent base is made for each architecture from Debian's packages
with mmdebstrap (bookworm: Python 3.11, the same minor version), with the host's CA bundle so
that pip in the build reaches the package index as the host does, joined in a manifest list
and passed as the Dockerfile's BASE; the test says which base it used. arm64's build steps and
its run go through qemu-user-static (binfmt_misc), as on any amd64 builder; the test says how
long each build and the emulated run took. Each image then runs as its own user, from its
own entrypoint, on a read-only root filesystem.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.utils import canonicalize_name

from exporter import __version__
from tests.support import EVENT, REPO, curl

pytestmark = pytest.mark.slow  # the two builds take minutes, arm64's under emulation

LIST = "localhost/falco-exporter:multiarch-test"
FALLBACK_BASE = "localhost/falco-exporter-base:bookworm-python3.11-multiarch"
# Debian's names of the architectures, and the kernel's (binfmt_misc's qemu-<machine>).
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}
HOST = {machine: arch for arch, machine in MACHINES.items()}.get(platform.machine(), "")
# What the base itself carries to install with, in the SBOM beside the locked packages.
BASE_INSTALLERS = {"pip", "setuptools", "wheel"}


@dataclass
class Built:
    """One architecture's image: its name, ID, configuration, base, SBOM and build time."""

    arch: str
    name: str
    image_id: str
    config: dict[str, Any]
    base: str
    sbom: Path
    seconds: float


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
    """A line in pytest's own output, captured or not: the base, the build and run times."""
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


def image_architectures() -> list[str]:
    """The architectures `make image` builds (the Makefile's ARCHITECTURES)."""
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith("ARCHITECTURES ?="):
            return line.split("=", 1)[1].split()
    raise AssertionError("the Makefile has no ARCHITECTURES")


def emulated(arch: str) -> bool:
    """Whether this architecture's programs run here through qemu rather than natively."""
    return arch != HOST


def emulator_missing(arch: str) -> str | None:
    """Why this host cannot run the architecture's programs, or None when it can: natively,
    or through a qemu-user-static interpreter registered in binfmt_misc (with the F flag,
    so that it works inside the build's chroot too)."""
    if not emulated(arch):
        return None
    entry = Path("/proc/sys/fs/binfmt_misc") / f"qemu-{MACHINES[arch]}"
    if not entry.exists():
        return (
            f"no binfmt_misc entry {entry} to run {arch} programs "
            "(Debian: apt-get install qemu-user-static binfmt-support)"
        )
    text = entry.read_text()
    flags = re.search(r"^flags: *(\S*)$", text, re.MULTILINE)
    if not text.startswith("enabled") or flags is None or "F" not in flags.group(1):
        return (
            f"{entry} is not enabled with the F flag: update-binfmts --enable qemu-{MACHINES[arch]}"
        )
    return None


def runs_as(pid: int) -> str:
    """The program the kernel runs for a process: under emulation, qemu's interpreter."""
    return str(Path(f"/proc/{pid}/exe").resolve())


def emulator(arch: str) -> str:
    """The interpreter binfmt_misc runs this architecture's programs with, resolved."""
    entry = (Path("/proc/sys/fs/binfmt_misc") / f"qemu-{MACHINES[arch]}").read_text()
    [interpreter] = [
        line.split()[1] for line in entry.splitlines() if line.startswith("interpreter ")
    ]
    return str(Path(interpreter).resolve())


def pullable(reference: str, arch: str) -> bool:
    """Whether the pinned base can be pulled from here (quickly no, without Docker Hub)."""
    result = subprocess.run(
        ["buildah", "--storage-driver", "vfs", "pull", "--quiet", "--platform", f"linux/{arch}",
         reference],
        capture_output=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    return result.returncode == 0


def debian_base(folder: Path, arch: str) -> str:
    """Bookworm for the architecture, with Python 3.11, pip and the host's CA bundle; its tag."""
    rootfs = folder / f"rootfs-{arch}.tar"
    subprocess.run(
        [
            "mmdebstrap", f"--arch={arch}", "--variant=essential", "--quiet",
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
    tag = f"{FALLBACK_BASE}-{arch}"
    container = buildah("from", "--arch", arch, "scratch")
    try:
        buildah("add", container, str(rootfs), "/")
        buildah(
            "config", "--arch", arch, "--os", "linux",
            "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "LANG=C.UTF-8",
            "--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            "--cmd", "python3",
            container,
        )  # fmt: skip
        buildah("commit", "--quiet", container, tag)
    finally:
        buildah("rm", container)
    probe = buildah("from", "--pull-never", "--arch", arch, tag)
    try:
        version = buildah("run", "--isolation", "chroot", probe, "python3", "--version")
    finally:
        buildah("rm", probe)
    assert version.startswith("Python 3.11."), version  # the Dockerfile's base's minor version
    return tag


def remove_list(name: str) -> None:
    """Remove a manifest list of local storage, if there is one."""
    exists = ["buildah", "--storage-driver", "vfs", "manifest", "exists", name]
    if subprocess.run(exists, check=False).returncode == 0:
        buildah("manifest", "rm", name)


def fallback_base(request: pytest.FixtureRequest, folder: Path, arches: list[str]) -> str:
    """Debian bases for every architecture, in one manifest list as the pinned base is."""
    remove_list(FALLBACK_BASE)
    buildah("manifest", "create", FALLBACK_BASE)
    for arch in arches:
        started = time.monotonic()
        tag = debian_base(folder, arch)
        buildah("manifest", "add", FALLBACK_BASE, f"containers-storage:{tag}")
        how = "under emulation" if emulated(arch) else "natively"
        say(request, f"image base {arch}: made with mmdebstrap {how} in "
                     f"{time.monotonic() - started:.0f} s")  # fmt: skip
    return FALLBACK_BASE


@pytest.fixture(scope="module")
def images(request: pytest.FixtureRequest) -> Iterator[dict[str, Built]]:
    """The image built from this checkout's Dockerfile for every architecture, as `make
    image` builds it; its SBOMs in a temporary folder."""
    for tool in ("buildah", "mmdebstrap", "unshare", "chroot", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} (Debian: apt-get install buildah mmdebstrap)")
    if os.geteuid() != 0:
        pytest.skip("building and running an image without a daemon needs root here")
    arches = image_architectures()
    assert sorted(arches) == sorted(MACHINES), arches  # the two this test knows how to run
    if HOST not in MACHINES:
        pytest.skip(f"the image test runs on amd64 or arm64, not {platform.machine()}")
    for arch in arches:
        missing = emulator_missing(arch)
        if missing is not None:
            pytest.skip(missing)
    pinned = dockerfile_base()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "build"
        if all(pullable(pinned, arch) for arch in arches):
            base, local = pinned, []
            say(request, f"image base: {pinned}, pulled for {', '.join(arches)}")
        else:
            say(
                request,
                f"image base: {pinned} could not be pulled from here; making an equivalent "
                "with mmdebstrap (Debian bookworm, Python 3.11) as BASE",
            )
            base, local = fallback_base(request, Path(folder), arches), ["--pull-never"]
        # What `make image` runs, with this test's storage, isolation, base and names.
        result = subprocess.run(
            [sys.executable, str(REPO / "tools" / "build_image.py"), "--tag", LIST,
             *(f"--arch={arch}" for arch in arches), "--base", base, *local,
             "--storage-driver", "vfs", "--isolation", "chroot", "--out", str(out)],
            capture_output=True, text=True, timeout=2400, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        seconds = {
            m.group(1): float(m.group(2))
            for m in re.finditer(r"^\S+-(\w+): built in (\d+) s", result.stdout, re.MULTILINE)
        }
        built = {}
        for arch in arches:
            name = f"{LIST}-{arch}"
            inspected = json.loads(buildah("inspect", "--type", "image", name))
            built[arch] = Built(
                arch, name, f"sha256:{inspected['FromImageID']}", inspected["OCIv1"], base,
                out / f"sbom-{arch}.cdx.json", seconds[arch],
            )  # fmt: skip
            how = "under emulation" if emulated(arch) else "natively"
            say(request, f"image {arch}: built {how} in {seconds[arch]:.0f} s")
        try:
            yield built
        finally:
            remove_list(LIST)
            for image in built.values():
                subprocess.run(
                    ["buildah", "--storage-driver", "vfs", "rmi", "-f", image.name], check=False
                )


ARCHES = sorted(MACHINES)


def locked() -> dict[str, str]:
    """requirements/image.lock's pins: normalised name, version."""
    pins: dict[str, str] = {}
    for line in (REPO / "requirements" / "image.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.split(" ")[0].partition("==")
            pins[canonicalize_name(name)] = version
    return pins


@pytest.mark.parametrize("arch", ARCHES)
def test_image_is_labelled_and_runs_as_a_numeric_non_root_user(
    images: dict[str, Built], arch: str
) -> None:
    """Built for its architecture; OCI labels name it, its version, revision, source and
    base, and its SBOM; the user is 65532, the entrypoint ours."""
    image = images[arch]
    assert image.config["architecture"] == arch
    labels = image.config["config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "falco-exporter"
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.base.name"] == image.base
    assert len(labels["org.opencontainers.image.revision"]) == 40
    assert labels["org.opencontainers.image.source"]  # the checkout's origin, or "unknown"
    assert labels["falco-exporter.sbom"] == image.sbom.name
    assert image.sbom.is_file()
    assert image.config["config"]["User"] == "65532:65532"
    assert image.config["config"]["Entrypoint"] == ["falco-exporter"]


def test_one_manifest_list_holds_every_architecture_and_pushes_as_an_oci_index(
    images: dict[str, Built], tmp_path: Path
) -> None:
    """The manifest list make image names holds each architecture's image, and the push
    of the docs (`buildah manifest push --all --format oci`) writes an OCI image index of
    both, each with its platform."""
    listed = json.loads(buildah("manifest", "inspect", LIST))
    digests = {
        arch: json.loads(buildah("inspect", "--type", "image", image.name))["FromImageDigest"]
        for arch, image in images.items()
    }
    assert {m["platform"]["architecture"]: m["digest"] for m in listed["manifests"]} == digests
    layout = tmp_path / "layout"
    buildah("manifest", "push", "--all", "--format", "oci", "--quiet", LIST, f"oci:{layout}",
            timeout=900)  # fmt: skip
    [pushed] = json.loads((layout / "index.json").read_text())["manifests"]
    assert pushed["mediaType"] == "application/vnd.oci.image.index.v1+json"
    algorithm, digest = pushed["digest"].split(":")
    index = json.loads((layout / "blobs" / algorithm / digest).read_text())
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = sorted(
        (m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]
    )
    assert platforms == [("linux", arch) for arch in ARCHES]


@pytest.mark.parametrize("arch", ARCHES)
def test_each_sbom_lists_the_locked_packages_and_the_debian_ones_of_its_image(
    images: dict[str, Built], arch: str
) -> None:
    """build/sbom-<arch>.cdx.json is valid CycloneDX 1.6 naming its image by ID; its Python
    packages are requirements/image.lock's, at their versions, and falco-exporter's own
    (beside only the base's installers); its Debian packages are the architecture's."""
    image = images[arch]
    text = image.sbom.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    component = bom["metadata"]["component"]
    assert component["type"] == "container"
    properties = {p["name"]: p["value"] for p in component["properties"]}
    assert properties["falco-exporter:image-id"] == image.image_id
    assert properties["falco-exporter:architecture"] == arch
    python: dict[str, str] = {
        canonicalize_name(c["name"]): c["version"]
        for c in bom["components"]
        if c.get("purl", "").startswith("pkg:pypi/") or c["name"] == "falco-exporter"
    }
    assert python.pop("falco-exporter") == __version__
    pins = locked()
    assert {name: python[name] for name in pins if name in python} == pins
    assert set(python) - set(pins) <= BASE_INSTALLERS, set(python) - set(pins)
    debian = [c for c in bom["components"] if c.get("purl", "").startswith("pkg:deb/debian/")]
    [libc] = [c for c in debian if c["name"] == "libc6"]
    assert f"arch={arch}" in libc["purl"]
    [interpreter] = [c for c in bom["components"] if c["name"] == "cpython"]
    assert interpreter["version"].startswith("3.11.")


@pytest.mark.parametrize("arch", ARCHES)
def test_image_serves_counts_and_stops_on_sigterm_read_only(
    images: dict[str, Built], arch: str, request: pytest.FixtureRequest
) -> None:
    """As its own user, on a read-only root, on its own architecture (arm64 on an amd64
    host through qemu): serves /metrics, counts a POST as Falco sends it, and exits 0 on
    SIGTERM."""
    image = images[arch]
    config = image.config["config"]
    # Emulated, Python starts several times slower: the deadlines allow for it.
    slow = 8 if emulated(arch) else 1
    container = buildah("from", "--pull-never", "--arch", arch, image.name)
    try:
        root = buildah("mount", container)
        user, group = config["User"].split(":")
        env = dict(item.split("=", 1) for item in config.get("Env", []))
        command = [*config["Entrypoint"], "--http-input-address", "127.0.0.1:0",
                   "--listen-address", "127.0.0.1:0", "--probes-listen-address", "127.0.0.1:0",
                   "--log-format", "json"]  # fmt: skip
        # A private mount namespace: the image's root bound read-only, /proc and /dev in it.
        script = (
            'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" '
            '&& mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" '
            f'&& exec chroot --userspec={user}:{group} "$0" "$@"'
        )
        started = time.monotonic()
        with subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, root,
             "env", "-i", *(f"{k}={v}" for k, v in env.items()), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:  # fmt: skip
            try:
                ports = serving_ports(process, deadline=30 * slow)
                serving = time.monotonic() - started
                status = (Path("/proc") / str(process.pid) / "status").read_text()
                uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
                assert uid_line.split()[1:] == [user] * 4  # every uid of the process is 65532
                mounts = (Path("/proc") / str(process.pid) / "mountinfo").read_text()
                [root_mount] = [m.split() for m in mounts.splitlines() if m.split()[4] == "/"]
                assert "ro" in root_mount[5].split(",")  # its root filesystem is read-only
                if emulated(arch):  # the image's own machine code, through qemu
                    assert runs_as(process.pid) == emulator(arch)
                else:
                    assert "qemu" not in runs_as(process.pid)
                posted = curl(
                    "-o", "/dev/null", "-w", "%{http_code}",
                    "-H", "Content-Type: application/json",
                    "--data-binary", json.dumps(EVENT),
                    f"http://127.0.0.1:{ports['http_input_port']}/",
                    timeout=30 * slow,
                ).stdout  # fmt: skip
                assert posted == "200"
                metrics = curl(
                    f"http://127.0.0.1:{ports['metrics_port']}/metrics", timeout=30 * slow
                ).stdout
                [sample] = [
                    line for line in metrics.splitlines() if line.startswith("falco_events{")
                ]
                assert 'k8s_pod_name="web-1"' in sample
                assert sample.endswith(" 1")
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=15 * slow) == 0
                assert "Traceback" not in (process.stderr.read() if process.stderr else "")
                how = "under emulation (qemu-user-static)" if emulated(arch) else "natively"
                took = time.monotonic() - started
                say(
                    request,
                    f"image {arch} run {how}: serving after {serving:.1f} s, "
                    f"counted and stopped after {took:.1f} s",
                )
            finally:
                if process.poll() is None:
                    process.kill()
    finally:
        subprocess.run(["buildah", "--storage-driver", "vfs", "umount", container], check=False)
        subprocess.run(["buildah", "--storage-driver", "vfs", "rm", container], check=False)


def serving_ports(process: subprocess.Popen[str], deadline: float) -> dict[str, int]:
    """Read the JSON log until `serving HTTP`; its ports (`deadline` seconds at most). On
    the way, the start-up line must say that the image runs its native extras, uvloop and
    orjson."""
    assert process.stdout is not None
    limit = deadline
    deadline = time.monotonic() + limit
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
    raise AssertionError(f"no 'serving HTTP' within {limit} s")
