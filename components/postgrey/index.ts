import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { appLabels, BUDGET, configVolumes, networkPolicy, KEEP_CLAIM_TEMPLATES, persistentClaim, resizeClaim, renderedConfigMap, restrictedContainer, tcpProbe } from "../kube";
import { POSTGREY_PORT, PostgreySettings, postgreyArgs, renderPostgrey } from "./config";

/** postgrey's user in the image (owner of its database directory). */
export const POSTGREY_UID = 5002;

export interface PostgreyArgs {
    namespace: pulumi.Input<string>;
    image: string;
    imagePullPolicy: string;
    settings: PostgreySettings;
    storageSize: string;
    storageClassName?: string;
    overrideConfigMap?: string;
}

/**
 * Postgrey, Postfix's greylisting policy service for inbound port-25 mail (never for authenticated submission: the
 * Postfix renderer puts check_policy_service only in port 25's restrictions). Its triplet database is on a
 * persistent volume so a restart does not greylist every sender again; only Postfix may connect.
 */
export class Postgrey extends pulumi.ComponentResource {
    readonly serviceName: pulumi.Output<string>;
    readonly port = POSTGREY_PORT;

    constructor(name: string, args: PostgreyArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:Postgrey", name, {}, opts);
        const { labels, selector } = appLabels("postgrey", "greylisting");
        const files = renderPostgrey(args.settings);
        const { configMap } = renderedConfigMap(`postgrey-config`, { namespace: args.namespace, labels, files }, { parent: this });
        const config = configVolumes("postgrey", configMap, args.overrideConfigMap);

        const service = new k8s.core.v1.Service(`${name}-service`, {
            metadata: { name: "postgrey", namespace: args.namespace, labels },
            spec: { selector, ports: [{ name: "policy", port: POSTGREY_PORT, targetPort: "policy", protocol: "TCP" }] },
        }, { parent: this });

        networkPolicy("postgrey", {
            namespace: args.namespace, labels, selector, ingress: [{ ports: [POSTGREY_PORT], peers: [{ apps: ["postfix"] }] }], egress: [],
        }, { parent: this });

        const statefulSet = new k8s.apps.v1.StatefulSet(`${name}-statefulset`, {
            metadata: { name: "postgrey", namespace: args.namespace, labels },
            spec: {
                // A plain name, not the Service's output: that output resolves only once the Service has ready
                // endpoints, which need this StatefulSet's pods — the engine would wait forever.
                serviceName: "postgrey",
                replicas: 1,
                selector: { matchLabels: selector },
                template: {
                    metadata: { labels },
                    spec: {
                        automountServiceAccountToken: false,
                        enableServiceLinks: false,
                        securityContext: { fsGroup: POSTGREY_UID, fsGroupChangePolicy: "OnRootMismatch", seccompProfile: { type: "RuntimeDefault" } },
                        containers: [{
                            name: "postgrey",
                            image: args.image,
                            imagePullPolicy: args.imagePullPolicy,
                            args: postgreyArgs(args.settings),
                            ports: [{ name: "policy", containerPort: POSTGREY_PORT, protocol: "TCP" }],
                            resources: BUDGET.postgrey,
                            securityContext: restrictedContainer(POSTGREY_UID),
                            volumeMounts: [
                                ...config.mounts,
                                { name: "data", mountPath: args.settings.dataDir },
                                { name: "run", mountPath: "/run/mail" },
                            ],
                            readinessProbe: tcpProbe(POSTGREY_PORT, 2),
                            livenessProbe: tcpProbe(POSTGREY_PORT, 10),
                        }],
                        volumes: [...config.volumes, { name: "run", emptyDir: { medium: "Memory", sizeLimit: "8Mi" } }],
                    },
                },
                volumeClaimTemplates: [persistentClaim("data", labels, args.storageSize, args.storageClassName)],
            },
        }, { parent: this, ...KEEP_CLAIM_TEMPLATES });
        resizeClaim(`${name}-data-size`, { namespace: args.namespace, labels, statefulSet, statefulSetName: "postgrey", claim: "data", size: args.storageSize }, { parent: this });

        this.serviceName = service.metadata.name;
        this.registerOutputs({ serviceName: this.serviceName });
    }
}
