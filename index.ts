// The mail stack: config → cluster → mail services → outputs. Everything else lives in components/.
import { loadConfig } from "./config";
import { createCluster } from "./components/cluster";

const config = loadConfig();
const cluster = createCluster("mail", config.cluster);

export const clusterName = cluster.clusterName;
export const clusterEndpoint = cluster.endpoint;
export const kubeconfig = cluster.kubeconfig;
