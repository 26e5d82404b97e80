import { stringify as toYaml } from "yaml";
import { CLUSTER_PROVIDERS, ClusterProvider, EDGE_MODES, EdgeMode } from "../../components/config/types";
import { base64Crypter } from "../kit/pulumi-cli-config";

export const TLS_MODES = ["selfsigned", "acme", "secret"] as const;
export type TlsMode = (typeof TLS_MODES)[number];

export interface Profile {
    clusterProvider: ClusterProvider;
    edgeMode: EdgeMode;
    tlsMode: TlsMode;
    dnsManage: boolean;
}

/** A stack's config as a test writes it: keys without the `mail:` prefix; `{ secret }` marks a `--secret` value. */
export type StackValues = Record<string, unknown>;

/** Every clusterProvider × edgeMode × tlsMode × dnsManage combination. */
export function allProfiles(): Profile[] {
    return CLUSTER_PROVIDERS.flatMap((clusterProvider) =>
        EDGE_MODES.flatMap((edgeMode) => TLS_MODES.flatMap((tlsMode) => [false, true].map((dnsManage) => ({ clusterProvider, edgeMode, tlsMode, dnsManage })))),
    );
}

/**
 * Why the program refuses a combination, or undefined when it deploys it: hostport needs DigitalOcean (a reserved
 * address and a cloud firewall), managed DNS needs a cloud provider, and ACME needs DNS-01 (dnsManage) or HTTP-01
 * (ingress-nginx).
 */
export function refusal(p: Profile): string | undefined {
    if (p.clusterProvider !== "digitalocean" && p.edgeMode === "hostport")
        return `mail:edgeMode = "hostport" is not allowed with clusterProvider ${p.clusterProvider}`;
    if (p.clusterProvider === "kubeconfig" && p.dnsManage) return "mail:dnsManage = true is not allowed with clusterProvider kubeconfig";
    if (p.tlsMode === "acme" && !p.dnsManage && p.edgeMode !== "ingress-nginx")
        return `mail:tlsMode = "acme" is not allowed with edgeMode ${p.edgeMode} and dnsManage false`;
    return undefined;
}

/** The stack config a user would set for a profile: the required keys plus what the profile's choices need. */
export function profileValues(p: Profile): StackValues {
    return {
        clusterProvider: p.clusterProvider,
        mailHostname: "mail.example.com",
        mailDomains: ["example.com"],
        edgeMode: p.edgeMode,
        tlsMode: p.tlsMode,
        dnsManage: p.dnsManage,
        ...(p.tlsMode === "secret" ? { tlsSecretName: "mail-cert" } : {}),
        ...(p.tlsMode === "acme" && p.dnsManage && p.clusterProvider === "digitalocean" ? { tlsAcmeDigitaloceanToken: { secret: "do-dns-token" } } : {}),
    };
}

/** Pulumi.<stack>.yaml as `pulumi config set [--secret] [--path]` writes it (secrets with Pulumi's test crypter). */
export function stackFile(values: StackValues): string {
    const config = Object.fromEntries(
        Object.entries(values).map(([key, value]) => [`mail:${key}`, isSecret(value) ? { secure: base64Crypter.encrypt(value.secret) } : value]),
    );
    return toYaml({ config });
}

/** The same values the way the test kit's mocks set them: no defaults applied, lists as JSON, nothing marked secret. */
export function mockConfig(values: StackValues): Record<string, string> {
    return Object.fromEntries(
        Object.entries(values).map(([key, value]) => {
            const plain = isSecret(value) ? value.secret : value;
            return [`mail:${key}`, typeof plain === "string" ? plain : JSON.stringify(plain)];
        }),
    );
}

function isSecret(value: unknown): value is { secret: string } {
    return typeof value === "object" && value !== null && "secret" in value;
}
