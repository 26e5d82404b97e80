import * as pulumi from "@pulumi/pulumi";
import { BUDGET, DaemonArgs, daemonConfig, mailWorkload, tcpProbe } from "../kube";
import { POSTGREY_LISTENERS, PostgreySettings, postgreyArgs, renderPostgrey } from "./config";

/** postgrey's user in the image (owner of its database directory). */
export const POSTGREY_UID = 5002;

export interface PostgreyArgs extends DaemonArgs<PostgreySettings> {
    storageSize: string;
    storageClassName?: string;
}

/**
 * Postgrey, Postfix's greylisting policy service for inbound port-25 mail (never for authenticated submission: the
 * Postfix renderer puts check_policy_service only in port 25's restrictions). Its triplet database is on a
 * persistent volume so a restart does not greylist every sender again; only Postfix may connect.
 */
export class Postgrey extends pulumi.ComponentResource {
    readonly serviceName: pulumi.Output<string>;
    readonly port = POSTGREY_LISTENERS.policy.port;

    constructor(name: string, args: PostgreyArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:Postgrey", name, {}, opts);
        const config = daemonConfig(name, { app: "postgrey", component: "greylisting", files: renderPostgrey(args.settings) }, args, { parent: this });

        const { service } = mailWorkload(
            name,
            {
                namespace: args.namespace,
                app: "postgrey",
                component: "greylisting",
                listeners: Object.values(POSTGREY_LISTENERS),
                egress: [],
                claim: { name: "data", size: args.storageSize, storageClassName: args.storageClassName },
                user: POSTGREY_UID,
                pod: {
                    containers: [
                        {
                            name: "postgrey",
                            image: args.image,
                            imagePullPolicy: args.imagePullPolicy,
                            args: postgreyArgs(args.settings),
                            resources: BUDGET.postgrey,
                            volumeMounts: [...config.mounts, { name: "data", mountPath: args.settings.dataDir }, { name: "run", mountPath: "/run/mail" }],
                            readinessProbe: tcpProbe(POSTGREY_LISTENERS.policy.port, 2),
                            livenessProbe: tcpProbe(POSTGREY_LISTENERS.policy.port, 10),
                        },
                    ],
                    volumes: [...config.volumes, { name: "run", emptyDir: { medium: "Memory", sizeLimit: "8Mi" } }],
                },
            },
            { parent: this },
        );

        this.serviceName = service.metadata.name;
        this.registerOutputs({ serviceName: this.serviceName });
    }
}
