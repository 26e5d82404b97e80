import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { parse as parseYaml } from "yaml";
import type { ExistingClusterConfig } from "../config/types";
import { ConfigError } from "../config/checks";
import { MailCluster } from "./types";

export type ExistingClusterArgs = Omit<ExistingClusterConfig, "provider">;

/** A cluster someone already runs (kind, k3d, minikube, or any cloud), reached through a kubeconfig file. */
export class ExistingCluster extends pulumi.ComponentResource implements MailCluster {
    readonly provider: k8s.Provider;
    readonly kubeconfig: pulumi.Output<string>;
    readonly clusterName: pulumi.Output<string>;
    readonly endpoint: pulumi.Output<string>;

    constructor(name: string, args: ExistingClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:ExistingCluster", name, {}, opts);

        const file = kubeconfigPath(args.kubeconfigPath);
        let text: string;
        try {
            text = fs.readFileSync(file, "utf8");
        } catch (e) {
            throw new ConfigError(
                `mail:clusterKubeconfig: cannot read kubeconfig ${file} (${(e as NodeJS.ErrnoException).code}); set mail:clusterKubeconfig or KUBECONFIG`,
            );
        }
        const context = args.context || currentContext(file, text);
        const contextEntry = contextsOf(text).find((c) => c.name === context);
        if (!contextEntry) {
            throw new ConfigError(
                `mail:clusterKubeconfigContext = "${context}" is not a context in ${file}; it has: ${
                    contextsOf(text)
                        .map((c) => c.name)
                        .join(", ") || "none"
                }`,
            );
        }

        this.kubeconfig = pulumi.secret(text);
        this.clusterName = pulumi.output(contextEntry.context?.cluster ?? context);
        this.endpoint = pulumi.output(context);
        this.provider = new k8s.Provider(`${name}-k8s`, { kubeconfig: this.kubeconfig, context }, { parent: this });
        this.registerOutputs({ kubeconfig: this.kubeconfig, clusterName: this.clusterName, endpoint: this.endpoint });
    }
}

function kubeconfigPath(configured: string): string {
    if (configured) return configured.replace(/^~(?=\/)/, os.homedir());
    const fromEnv = process.env.KUBECONFIG?.split(path.delimiter).find((p) => p !== "");
    return fromEnv ?? path.join(os.homedir(), ".kube", "config");
}

interface KubeconfigContext {
    name: string;
    context?: { cluster?: string };
}

function contextsOf(text: string): KubeconfigContext[] {
    const doc = parseYaml(text) as { contexts?: KubeconfigContext[] } | null;
    return doc?.contexts ?? [];
}

function currentContext(file: string, text: string): string {
    const current = (parseYaml(text) as { "current-context"?: string } | null)?.["current-context"];
    if (!current) throw new ConfigError(`mail:clusterKubeconfigContext is empty and ${file} has no current-context; set one`);
    return current;
}
