import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { appLabels } from "../kube";

export const SELF_SIGNED_SECRET = "mail-tls-selfsigned";

export interface SelfSignedTlsArgs {
    namespace: pulumi.Input<string>;
    hostnames: string[];
    validityHours?: number;
}

/** A self-signed certificate for the mail host names, in a `kubernetes.io/tls` Secret (for dev stacks). */
export class SelfSignedTls extends pulumi.ComponentResource {
    readonly secretName: pulumi.Output<string>;
    readonly certificatePem: pulumi.Output<string>;

    constructor(name: string, args: SelfSignedTlsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:SelfSignedTls", name, {}, opts);
        const key = new tls.PrivateKey(`${name}-key`, { algorithm: "RSA", rsaBits: 2048 }, { parent: this });
        const cert = new tls.SelfSignedCert(
            `${name}-cert`,
            {
                privateKeyPem: key.privateKeyPem,
                subject: { commonName: args.hostnames[0] },
                dnsNames: args.hostnames,
                validityPeriodHours: args.validityHours ?? 24 * 365,
                earlyRenewalHours: 24 * 30,
                allowedUses: ["digital_signature", "key_encipherment", "server_auth"],
            },
            { parent: this },
        );
        const secret = new k8s.core.v1.Secret(
            `${name}-secret`,
            {
                // Not "mail-tls", the Secret cert-manager writes for tlsMode acme: switching to acme must not end with
                // Pulumi deleting this Secret after cert-manager took it over (and then issuing again).
                metadata: { name: SELF_SIGNED_SECRET, namespace: args.namespace, labels: appLabels(SELF_SIGNED_SECRET, "tls").labels },
                type: "kubernetes.io/tls",
                stringData: { "tls.crt": cert.certPem, "tls.key": key.privateKeyPem },
            },
            { parent: this, additionalSecretOutputs: ["stringData", "data"] },
        );
        this.secretName = secret.metadata.name;
        this.certificatePem = cert.certPem;
        this.registerOutputs({ secretName: this.secretName, certificatePem: this.certificatePem });
    }
}
