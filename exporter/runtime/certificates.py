"""The certificates the exporter holds, and when each expires: read when loaded, not per scrape.

The listeners load their certificates at start; the gRPC input re-reads its client files
when they change on disk (and reconnects with them). The dates are read at those moments
(`reload`), so a scrape reports what is held, and costs no file read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from exporter.core.metrics import PREFIX, Families, FamilySpec, Kind
from exporter.settings.x509_dates import Validity, read_validity

# A certificate that expires within this is warned of at start-up, as the shipped alert does.
WARN_BEFORE_EXPIRY = 14 * 86400

EXPIRY = FamilySpec(
    f"{PREFIX}certificate_expiry_timestamp_seconds",
    Kind.GAUGE,
    "Unix time when the certificate in the file expires, by role and path.",
    ("role", "path"),
)


class HeldCertificates:
    """role -> certificate file, with the validity read when it was last loaded."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self._files = dict(files)
        self._dates: dict[str, Validity] = {}
        self.reload()

    def reload(self) -> None:
        """Read every file's dates again (after a rotation); one that cannot be read is left out."""
        dates = {}
        for role, path in self._files.items():
            validity = read_validity(path)
            if validity is not None:
                dates[role] = validity
        self._dates = dates  # replaced whole: a scrape reads one version or the other

    def expiring(self, within: float, now: float | None = None) -> list[tuple[str, str, float]]:
        """(role, path, expiry) of every certificate that expires within `within` seconds."""
        limit = (time.time() if now is None else now) + within
        return [
            (role, self._files[role], dates.not_after)
            for role, dates in sorted(self._dates.items())
            if dates.not_after <= limit
        ]

    def collect(self, families: Families) -> None:
        """The expiry of each certificate held (no family where none is configured)."""
        if not self._files:
            return
        family = families.family(EXPIRY)
        for role, dates in sorted(self._dates.items()):
            family.add([role, self._files[role]], dates.not_after)
