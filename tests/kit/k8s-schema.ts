import type { RecordedResource } from "./mocks";

/** Pulumi's secret wrapper as the mock monitor hands it over. */
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

/** Strips Pulumi's secret wrappers, so the object is what the API server would receive. */
export function unwrapSecrets(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(unwrapSecrets);
    if (value && typeof value === "object") {
        const obj = value as Record<string, unknown>;
        if (SECRET_SIG in obj) return unwrapSecrets(obj.value);
        return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, unwrapSecrets(v)]));
    }
    return value;
}

type ModelClass = new (data: unknown) => { validate(): void };

/** Models of custom resources we create, by API group (core kinds come from kubernetes-models). */
const CRD_MODELS: Record<string, string> = {
    "cert-manager.io": "@kubernetes-models/cert-manager",
    "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

/** kubernetes-models 4.x module for an apiVersion: "v1" → kubernetes-models/v1, "apps/v1" → kubernetes-models/apps/v1. */
function modelFor(apiVersion: string, kind: string): ModelClass {
    let mod: Record<string, unknown>;
    const crdPackage = CRD_MODELS[apiVersion.split("/")[0]];
    try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        mod = require(`${crdPackage ?? "kubernetes-models"}/${apiVersion}`);
    } catch {
        throw new Error(`no schema for apiVersion ${apiVersion} (kind ${kind}): add its models package to tests/kit/k8s-schema.ts`);
    }
    const model = mod[kind] as ModelClass | undefined;
    if (!model) throw new Error(`no schema for ${apiVersion} ${kind}`);
    return model;
}

/** Every recorded Kubernetes object (resources of the kubernetes provider with an apiVersion and kind). */
export function kubernetesObjects(resources: RecordedResource[]): RecordedResource[] {
    return resources.filter((r) => r.type.startsWith("kubernetes:") && r.custom && typeof r.inputs.kind === "string");
}

/** Validates each object against its Kubernetes schema; returns one message per failure (empty when all pass). */
export function schemaErrors(resources: RecordedResource[]): string[] {
    const errors: string[] = [];
    for (const r of kubernetesObjects(resources)) {
        const object = unwrapSecrets(r.inputs) as { apiVersion: string; kind: string };
        try {
            new (modelFor(object.apiVersion, object.kind))(object).validate();
        } catch (e) {
            errors.push(`${r.type} ${r.name}: ${(e as Error).message}`);
        }
    }
    return errors;
}
