import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { appLabels, BUDGET, configVolumes, networkPolicy, renderedConfigMap, rootDroppingContainer, tcpProbe } from "../kube";
import { OPENDKIM_PORTS, OpenDkimSettings, renderOpenDkim } from "./config";

export interface OpenDkimArgs {
    namespace: pulumi.Input<string>;
    image: string;
    imagePullPolicy: string;
    settings: OpenDkimSettings;
    /** Secret holding `<domain>.private` for each domain (DkimKeys). */
    keysSecretName: pulumi.Input<string>;
    overrideConfigMap?: string;
}

/** OpenDKIM as Postfix's milter: signs submitted mail for our domains, verifies inbound mail. Stateless. */
export class OpenDkim extends pulumi.ComponentResource {
    readonly serviceName: pulumi.Output<string>;

    constructor(name: string, args: OpenDkimArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:OpenDkim", name, {}, opts);
        const { labels, selector } = appLabels("opendkim", "milter");
        const files = renderOpenDkim(args.settings);
        const { configMap } = renderedConfigMap(`opendkim-config`, { namespace: args.namespace, labels, files }, { parent: this });
        const config = configVolumes("opendkim", configMap, args.overrideConfigMap);

        const service = new k8s.core.v1.Service(`${name}-service`, {
            metadata: { name: "opendkim", namespace: args.namespace, labels },
            spec: { selector, ports: [{ name: "milter", port: OPENDKIM_PORTS.milter, targetPort: "milter", protocol: "TCP" }] },
        }, { parent: this });

        // Verifying signatures needs DNS only.
        networkPolicy("opendkim", {
            namespace: args.namespace, labels, selector, ingress: [{ ports: [OPENDKIM_PORTS.milter], peers: [{ apps: ["postfix"] }] }], egress: [],
        }, { parent: this });

        new k8s.apps.v1.Deployment(`${name}-deployment`, {
            metadata: { name: "opendkim", namespace: args.namespace, labels },
            spec: {
                replicas: 1,
                selector: { matchLabels: selector },
                template: {
                    metadata: { labels },
                    spec: {
                        automountServiceAccountToken: false,
                        enableServiceLinks: false,
                        securityContext: { seccompProfile: { type: "RuntimeDefault" } },
                        containers: [{
                            name: "opendkim",
                            image: args.image,
                            imagePullPolicy: args.imagePullPolicy,
                            ports: [{ name: "milter", containerPort: OPENDKIM_PORTS.milter, protocol: "TCP" }],
                            resources: BUDGET.opendkim,
                            // Root only to copy the keys to opendkim-owned files and create /dev/log; opendkim runs as its user.
                            securityContext: rootDroppingContainer(["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"]),
                            volumeMounts: [
                                ...config.mounts,
                                { name: "keys", mountPath: "/etc/mail/dkim", readOnly: true },
                                { name: "run", mountPath: "/run/mail" },
                                { name: "tmp", mountPath: "/tmp" },
                            ],
                            readinessProbe: tcpProbe(OPENDKIM_PORTS.milter, 2),
                            livenessProbe: tcpProbe(OPENDKIM_PORTS.milter, 10),
                        }],
                        volumes: [
                            ...config.volumes,
                            { name: "keys", secret: { secretName: args.keysSecretName, defaultMode: 0o400 } },
                            { name: "run", emptyDir: { medium: "Memory", sizeLimit: "8Mi" } },
                            { name: "tmp", emptyDir: { medium: "Memory", sizeLimit: "8Mi" } },
                        ],
                    },
                },
            },
        }, { parent: this });

        this.serviceName = service.metadata.name;
        this.registerOutputs({ serviceName: this.serviceName });
    }
}
