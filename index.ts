// The mail stack: config → cluster → mail services → outputs. Everything else lives in components/.
import { loadConfig } from "./components/config/load";
import { createCluster } from "./components/cluster";
import { MailStack } from "./components/stack";

const config = loadConfig();
const cluster = createCluster("mail", config.cluster);
const stack = new MailStack("mail", { ...config, clusterProvider: config.cluster.provider }, { providers: { kubernetes: cluster.provider } });

export const clusterName = cluster.clusterName;
export const clusterEndpoint = cluster.endpoint;
export const kubeconfig = cluster.kubeconfig;
export const namespace = stack.namespace;
export const dnsRecords = stack.dnsRecords;
export const dnsZone = stack.dnsZoneSnippet;
export const dkimTxt = stack.dkimTxt;
export const endpoints = stack.endpoints;
export const addFirstUser = stack.addFirstUser;
export const publicAddresses = stack.publicAddresses;
export const mtaStsPolicy = stack.mtaStsPolicy;
export const warnings = stack.warnings;
