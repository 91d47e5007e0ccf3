"""Build the container image for each architecture, join them in one manifest list, and
write each one's SBOM beside it (`make image`; tests/test_image.py runs it the same way).

Per architecture: `buildah bud --platform linux/<arch>` of the Dockerfile, tagged
`<tag>-<arch>` (another architecture's RUN steps run under qemu-user-static), then
`<out>/sbom-<arch>.cdx.json`, CycloneDX 1.6: the Python environment as the image's own
interpreter sees it (cyclonedx-py, run inside the image from this venv's copy, mounted
read-only), the Debian packages dpkg knows there, and the interpreter itself; its
`metadata.component` names the image by its ID. The image's label `falco-exporter.sbom` names
that file. Last, the manifest list `<tag>` holds every architecture's image:
`buildah manifest push --all <tag> docker://REGISTRY/falco-exporter:VERSION` publishes it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cyclonedx_py
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

REPO = Path(__file__).resolve().parent.parent
TOOL_MOUNT = "/opt/sbom-tool"
# Inside the image: cyclonedx-py on its interpreter's environment, to stdout. The tool's own
# packages are imported from the mount, not added to the environment it reads.
PYTHON_SBOM = f"""
import runpy, sys
sys.path.insert(0, {TOOL_MOUNT!r})
sys.argv = ["cyclonedx-py", "environment", "--sv", "1.6", "--output-reproducible",
            "--no-validate", "-o", "-", sys.executable]
runpy.run_module("cyclonedx_py", run_name="__main__", alter_sys=True)
"""
PACKAGES = r"dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n'"
OS_AND_PYTHON = (
    f'{PACKAGES} && . /etc/os-release && echo "os\t$ID\t$VERSION_ID"'
    ' && python3 -c \'import platform; print("python", platform.python_version(), sep="\\t")\''
)


class Buildah:
    """buildah with the global options of this run (a storage driver, say)."""

    def __init__(self, global_options: list[str], isolation: str | None) -> None:
        self.global_options = global_options
        self.isolation = ["--isolation", isolation] if isolation else []

    def __call__(self, *args: str) -> str:
        """Run it; its stdout. A failure stops the build, with buildah's message."""
        result = subprocess.run(
            ["buildah", *self.global_options, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"buildah {' '.join(args)}: {result.stderr[-3000:]}")
        return result.stdout.strip()

    def run(self, container: str, *command: str, volume: str | None = None) -> str:
        """A command in the container (under emulation on another architecture)."""
        mounts = ["--volume", volume] if volume else []
        return self("run", *self.isolation, *mounts, container, "--", *command)


def build(buildah: Buildah, arch: str, args: argparse.Namespace, labels: dict[str, str]) -> str:
    """The Dockerfile built for one architecture, tagged `<tag>-<arch>`; the tag. `labels`:
    the build arguments REVISION and SOURCE."""
    image = f"{args.tag}-{arch}"
    base = ["--build-arg", f"BASE={args.base}"] if args.base else []
    pull = ["--pull-never"] if args.pull_never else []
    buildah(
        "bud", *buildah.isolation, *pull, "--layers=false", "--quiet",
        "--platform", f"linux/{arch}", *base,
        *(f"--build-arg={key}={value}" for key, value in labels.items()),
        "-t", image, str(REPO),
    )  # fmt: skip
    return image


def sbom(buildah: Buildah, image: str, arch: str) -> dict[str, Any]:
    """The image's CycloneDX SBOM: its Python distributions, Debian packages, interpreter."""
    inspected = json.loads(buildah("inspect", "--type", "image", image))
    container = buildah("from", "--pull-never", "--arch", arch, image)
    try:
        tool = str(Path(cyclonedx_py.__file__).resolve().parent.parent)
        bom: dict[str, Any] = json.loads(
            buildah.run(container, "python3", "-c", PYTHON_SBOM, volume=f"{tool}:{TOOL_MOUNT}:ro")
        )
        listing = buildah.run(container, "sh", "-c", OS_AND_PYTHON)
    finally:
        buildah("rm", container)
    rows = [line.split("\t") for line in listing.splitlines()]
    [(_, distro, distro_version)] = [row for row in rows if row[0] == "os"]
    [(_, python_version)] = [row for row in rows if row[0] == "python"]
    for name, version, package_arch in (row for row in rows if len(row) == 3 and row[0] != "os"):
        qualifiers = {"arch": package_arch, "distro": f"{distro}-{distro_version}"}
        purl = PackageURL("deb", distro, name, version, qualifiers).to_string()
        bom["components"].append(
            {"type": "library", "bom-ref": purl, "name": name, "version": version, "purl": purl}
        )
    interpreter = PackageURL("generic", None, "cpython", python_version).to_string()
    bom["components"].append(
        {
            "type": "application",
            "bom-ref": interpreter,
            "name": "cpython",
            "version": python_version,
            "purl": interpreter,
        }
    )
    config = inspected["OCIv1"]
    bom["metadata"]["component"] = {
        "type": "container",
        "bom-ref": "image",
        "name": config["config"]["Labels"]["org.opencontainers.image.title"],
        "version": config["config"]["Labels"]["org.opencontainers.image.version"],
        "properties": [
            {"name": "falco-exporter:image-id", "value": f"sha256:{inspected['FromImageID']}"},
            {"name": "falco-exporter:architecture", "value": config["architecture"]},
        ],
    }
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom))
    if error is not None:
        raise SystemExit(f"the SBOM of {image} is not valid CycloneDX 1.6: {error}")
    return bom


def git(*args: str) -> str:
    """A git answer about this checkout, empty where there is none."""
    result = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def public(url: str) -> str:
    """A remote's URL without the user and password an https remote may carry."""
    parts = urlsplit(url)
    if parts.scheme in {"http", "https"} and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


def main() -> None:
    """Build every architecture, write the SBOMs, make the manifest list."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", required=True, help="the manifest list's name")
    parser.add_argument("--arch", action="append", required=True, help="amd64, arm64, ...")
    parser.add_argument("--base", default="", help="the Dockerfile's BASE (default: its own)")
    parser.add_argument("--out", type=Path, default=REPO / "build", help="where SBOMs go")
    parser.add_argument("--pull-never", action="store_true", help="use local images only")
    parser.add_argument("--storage-driver", default="", help="buildah's storage driver")
    parser.add_argument("--isolation", default="", help="buildah's isolation (chroot, ...)")
    args = parser.parse_args()
    buildah = Buildah(
        ["--storage-driver", args.storage_driver] if args.storage_driver else [], args.isolation
    )
    labels = {
        "REVISION": git("rev-parse", "HEAD") or "unknown",
        "SOURCE": public(git("remote", "get-url", "origin")) or "unknown",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    images = []
    for arch in args.arch:
        started = time.monotonic()
        image = build(buildah, arch, args, labels)
        built = time.monotonic() - started
        path = args.out / f"sbom-{arch}.cdx.json"
        path.write_text(json.dumps(sbom(buildah, image, arch), indent=2) + "\n")
        images.append(image)
        print(f"{image}: built in {built:.0f} s; SBOM {path}", flush=True)
    existing = subprocess.run(
        ["buildah", *buildah.global_options, "manifest", "exists", args.tag], check=False
    )
    if existing.returncode == 0:
        buildah("manifest", "rm", args.tag)
    buildah("manifest", "create", args.tag)
    for image in images:
        buildah("manifest", "add", args.tag, f"containers-storage:{image}")
    print(f"{args.tag}: manifest list of {', '.join(args.arch)}", flush=True)


if __name__ == "__main__":
    main()
