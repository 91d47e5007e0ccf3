// Validates Prometheus Operator objects (a JSON array on stdin) with the schemas of
// @kubernetes-models/prometheus-operator, installed under MODELS_DIR by
// tools/install_chart_tools.sh; prints one line per invalid object and exits 1 if any.
import { pathToFileURL } from "node:url";
const base = `${process.env.MODELS_DIR}/node_modules/@kubernetes-models/prometheus-operator`;
const models = {};
for (const kind of ["ServiceMonitor", "PodMonitor", "PrometheusRule"]) {
  const module = await import(pathToFileURL(`${base}/monitoring.coreos.com/v1/${kind}.js`));
  models[kind] = module[kind];
}
let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = 0;
for (const object of JSON.parse(input)) {
  const Model = models[object.kind];
  if (!Model) {
    console.log(`${object.kind}: no schema here`);
    failed++;
    continue;
  }
  try {
    new Model(object).validate();
  } catch (error) {
    console.log(`${object.kind} ${object.metadata?.name}: ${error.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
