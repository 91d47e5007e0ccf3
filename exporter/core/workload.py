"""The workload a pod belongs to: the value of the optional `k8s_workload` label.

Pods churn and workloads do not: every rollout brings new pod names, while the Deployment,
DaemonSet or StatefulSet behind them keeps its name. The label is taken, in this order:

1. from the k8smeta plugin's fields, when the rule's output has them (Falco writes `<NA>` for
   one without a value): `k8smeta.deployment.name`; else `k8smeta.rs.name` without its
   pod-template hash (a ReplicaSet of a Deployment the collector has not sent yet, or of an
   Argo Rollout); else `k8smeta.rc.name`. The plugin has no DaemonSet, StatefulSet, Job or
   CronJob fields, so for those pods the name decides;
2. else from the pod name (`k8s.pod.name`, else `k8smeta.pod.name`), by stripping what the
   controller appended. Kubernetes' generated parts use an alphabet without vowels
   (k8s.io/apimachinery/pkg/util/rand), so they are rarely mistaken for a real name's:
   - `<owner>-<5 random>`: a pod made from a generateName (ReplicaSet, DaemonSet, Job,
     ReplicationController), and then, when the owner itself ends in one,
     `-<pod-template hash>` (a Deployment's ReplicaSet) or `-<8 digits>` (a CronJob's Job,
     named by its scheduled minute since 1970) is stripped too;
   - `<name>-<ordinal>`: a StatefulSet's pod;
   - a generated name at the 63-character limit, whose owner was cut to 58 characters
     (`<owner cut><5 random>`, maybe with no dash): the cut owner, without a cut hash;
   - anything else (a bare or static pod) is its own workload.

docs/cardinality.md#the-workload-label lists the names this gets wrong. An empty pod (an
event on the host) gives "", as k8s_pod_name does.

The derivation runs once per name: results are cached, the cache bounded by clearing it
when full. Producer threads share it; a dict's get and set are atomic, and a lost entry is
only computed again.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from exporter.core.event import MISSING_VALUE, Event

# k8s.io/apimachinery/pkg/util/rand: the characters of generated name suffixes.
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# A pod-template hash is rand.SafeEncodeString of a 32-bit hash written in decimal: each
# digit becomes ALPHABET[ord(digit) % 27], so only these ten characters occur in one.
HASH_CHARACTERS = "".join(sorted({ALPHABET[ord(digit) % len(ALPHABET)] for digit in "0123456789"}))
_RANDOM = re.compile(f"[{ALPHABET}]{{5}}")
# Up to 10 digits (2**32 - 1); fewer than 5 (a hash below 10,000) is too rare to be worth
# stripping words like "db" from real names.
_HASH = re.compile(f"[{HASH_CHARACTERS}]{{5,10}}")
_SCHEDULE = re.compile(r"[0-9]{8}")  # minutes since 1970: 8 digits from 1989 to 2160
_ORDINAL = re.compile(r"0|[1-9][0-9]*")
# What is left of a hash or a schedule when the owner's name was cut.
_CUT_SUFFIX = re.compile(f"[0-9{HASH_CHARACTERS}]{{1,10}}")
_GENERATED_LENGTH = 63  # a generated name at its limit: 58 characters of owner, 5 random
_OWNER_LENGTH = _GENERATED_LENGTH - 5
_LONGEST_NAME = 253  # a Kubernetes object's name; a longer "pod" is not one, and not cached
CACHE_SIZE = 4096


def workload_of_pod(pod: str) -> str:
    """The workload a pod's name says it belongs to (the module's docstring says how)."""
    owner, dash, suffix = pod.rpartition("-")
    if dash and owner and _RANDOM.fullmatch(suffix):
        return _without_generated_suffix(owner, _HASH, _SCHEDULE)
    if dash and owner and _ORDINAL.fullmatch(suffix):
        return owner
    if len(pod) == _GENERATED_LENGTH and _RANDOM.fullmatch(pod, _OWNER_LENGTH):
        return _without_generated_suffix(pod[:_OWNER_LENGTH], _CUT_SUFFIX)
    return pod


def workload_of_replica_set(name: str) -> str:
    """A ReplicaSet's name without the pod-template hash its Deployment appended."""
    return _without_generated_suffix(name, _HASH)


def _without_generated_suffix(name: str, *suffixes: re.Pattern[str]) -> str:
    head, dash, tail = name.rpartition("-")
    if dash and head and any(suffix.fullmatch(tail) for suffix in suffixes):
        return head
    return name


class WorkloadOf:
    """An event's workload; one per label set, with its own bounded caches."""

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        self._cache_size = cache_size
        self._pods: dict[str, str] = {}
        self._replica_sets: dict[str, str] = {}

    def __call__(self, event: Event) -> str:
        """The value of k8s_workload for this event."""
        get = event.output_fields.get
        deployment = get("k8smeta.deployment.name")
        if deployment and deployment != MISSING_VALUE:
            return deployment
        replica_set = get("k8smeta.rs.name")
        if replica_set and replica_set != MISSING_VALUE:
            return self._cached(self._replica_sets, replica_set, workload_of_replica_set)
        controller = get("k8smeta.rc.name")
        if controller and controller != MISSING_VALUE:
            return controller
        pod = get("k8s.pod.name")
        if pod is None:
            pod = get("k8smeta.pod.name", "")
        return self._cached(self._pods, pod, workload_of_pod)

    def cached(self) -> int:
        """How many names are cached now (at most twice the cache size)."""
        return len(self._pods) + len(self._replica_sets)

    def _cached(self, cache: dict[str, str], name: str, derive: Callable[[str], str]) -> str:
        found = cache.get(name)
        if found is not None:
            return found
        if len(name) > _LONGEST_NAME:
            return name  # not a Kubernetes name: counted as is, cut like k8s_pod_name
        found = derive(name)
        if len(cache) >= self._cache_size:
            cache.clear()
        cache[name] = found
        return found
