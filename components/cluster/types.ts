import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "../config/checks";

/** What every cluster target exposes; nothing past index.ts knows which cloud it runs on. */
export interface MailCluster {
    /** The Kubernetes provider every mail resource is created with. */
    readonly provider: k8s.Provider;
    /** A kubeconfig for the cluster; always a secret output. */
    readonly kubeconfig: pulumi.Output<string>;
    readonly clusterName: pulumi.Output<string>;
    /** API server endpoint, or the kubeconfig context for an existing cluster. */
    readonly endpoint: pulumi.Output<string>;
}

/** Cloud version filters match by string prefix: "1.3" would match 1.30–1.39, so anchor at the dot. */
export function versionFilter(prefix: string): string | undefined {
    if (prefix === "") return undefined;
    return prefix.endsWith(".") ? prefix : `${prefix}.`;
}

/** The version a cloud offered for the prefix, or a preview-time error naming the key when it offered none. */
export function requireVersion(offered: string | undefined, prefix: string, cloud: string): string {
    if (!offered) throw new ConfigError(`mail:clusterVersionPrefix = "${prefix}" matches no ${cloud} Kubernetes version`);
    return offered;
}
