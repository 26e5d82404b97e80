import * as pulumi from "@pulumi/pulumi";
import { BUDGET, DaemonArgs, daemonConfig, mailWorkload, rootDroppingContainer, tcpProbe } from "../kube";
import { OPENDKIM_LISTENERS, OpenDkimSettings, renderOpenDkim } from "./config";

export interface OpenDkimArgs extends DaemonArgs<OpenDkimSettings> {
    /** Secret holding `<domain>.private` for each domain (DkimKeys). */
    keysSecretName: pulumi.Input<string>;
}

/** OpenDKIM as Postfix's milter: signs submitted mail for our domains, verifies inbound mail. Stateless. */
export class OpenDkim extends pulumi.ComponentResource {
    readonly serviceName: pulumi.Output<string>;

    constructor(name: string, args: OpenDkimArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:OpenDkim", name, {}, opts);
        const config = daemonConfig(name, { app: "opendkim", component: "milter", files: renderOpenDkim(args.settings) }, args, { parent: this });

        // Verifying signatures needs DNS only.
        const { service } = mailWorkload(
            name,
            {
                namespace: args.namespace,
                app: "opendkim",
                component: "milter",
                kind: "Deployment",
                listeners: Object.values(OPENDKIM_LISTENERS),
                egress: [],
                pod: {
                    containers: [
                        {
                            name: "opendkim",
                            image: args.image,
                            imagePullPolicy: args.imagePullPolicy,
                            resources: BUDGET.opendkim,
                            // Root only to copy the keys to opendkim-owned files and create /dev/log; opendkim runs as its user.
                            securityContext: rootDroppingContainer(["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"]),
                            volumeMounts: [
                                ...config.mounts,
                                { name: "keys", mountPath: "/etc/mail/dkim", readOnly: true },
                                { name: "run", mountPath: "/run/mail" },
                                { name: "tmp", mountPath: "/tmp" },
                            ],
                            readinessProbe: tcpProbe(OPENDKIM_LISTENERS.milter.port, 2),
                            livenessProbe: tcpProbe(OPENDKIM_LISTENERS.milter.port, 10),
                        },
                    ],
                    volumes: [
                        ...config.volumes,
                        { name: "keys", secret: { secretName: args.keysSecretName, defaultMode: 0o400 } },
                        { name: "run", emptyDir: { medium: "Memory", sizeLimit: "8Mi" } },
                        { name: "tmp", emptyDir: { medium: "Memory", sizeLimit: "8Mi" } },
                    ],
                },
            },
            { parent: this },
        );

        this.serviceName = service.metadata.name;
        this.registerOutputs({ serviceName: this.serviceName });
    }
}
