import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { appLabels } from "../kube";
import { dkimKeyFileName } from "../opendkim/config";

export interface DkimKeysArgs {
    namespace: pulumi.Input<string>;
    domains: string[];
    selector: string;
}

/** `v=DKIM1; k=rsa; p=…` from a PEM public key (SPKI), as published in `<selector>._domainkey.<domain>`. */
export function dkimTxtValue(publicKeyPem: string): string {
    const base64 = publicKeyPem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, "").replace(/\s+/g, "");
    return `v=DKIM1; k=rsa; p=${base64}`;
}

/**
 * One RSA-2048 DKIM key per domain. Private keys exist only in Pulumi state (as secrets) and one Kubernetes
 * Secret that only OpenDKIM mounts; the public halves come out as the TXT values to publish.
 */
export class DkimKeys extends pulumi.ComponentResource {
    readonly secretName: pulumi.Output<string>;
    /** domain → TXT record value. */
    readonly txtValues: Record<string, pulumi.Output<string>>;

    constructor(name: string, args: DkimKeysArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:DkimKeys", name, {}, opts);
        if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(args.selector)) {
            throw new Error(`DkimKeys selector "${args.selector}" must be a DNS label (lowercase letters, digits, dashes)`);
        }
        const keys = Object.fromEntries(
            args.domains.map((domain) => [domain, new tls.PrivateKey(`${name}-${domain}`, { algorithm: "RSA", rsaBits: 2048 }, { parent: this })]),
        );
        const secret = new k8s.core.v1.Secret(
            `${name}-secret`,
            {
                metadata: { name: "dkim-keys", namespace: args.namespace, labels: appLabels("opendkim", "signing").labels },
                type: "Opaque",
                stringData: Object.fromEntries(args.domains.map((d) => [dkimKeyFileName(d), keys[d].privateKeyPem])),
            },
            { parent: this, additionalSecretOutputs: ["stringData", "data"] },
        );

        this.secretName = secret.metadata.name;
        this.txtValues = Object.fromEntries(args.domains.map((d) => [d, keys[d].publicKeyPem.apply(dkimTxtValue)]));
        this.registerOutputs({ secretName: this.secretName, txtValues: this.txtValues });
    }
}
