// Looks up the Kubernetes objects a mocked program run registered, by kind and name, with Secrets' data in plain text.
import { kubernetesObjects, unwrapSecrets } from "./k8s-schema";
import type { ProgramRun } from "./program";

/** The least stack config for a cloud target (it needs no kubeconfig file under mocks). */
export const CLOUD_MAIL_CONFIG = { clusterProvider: "digitalocean", mailHostname: "mail.example.com", mailDomains: ["example.com"] };

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes objects as the program declares them */
/** A Kubernetes object as the program declares it (spec left loose: each test reads the fields it checks). */
export type DeclaredObject = {
    apiVersion: string;
    kind: string;
    metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
    spec?: any;
    data?: Record<string, string>;
};
/* eslint-enable @typescript-eslint/no-explicit-any */

export interface StackObjectLookup<T> {
    /** Every Kubernetes object the run registered. */
    objects: (run: ProgramRun) => T[];
    /** The object of that kind and name, or undefined. */
    find: (run: ProgramRun, kind: string, name: string) => T | undefined;
    /** The object of that kind and name; throws naming both when the run has none. */
    get: (run: ProgramRun, kind: string, name: string) => T;
}

/** Lookups typed as `T` (each test file declares the fields it reads). */
export function stackObjectLookup<T extends { kind: string; metadata: { name: string } } = DeclaredObject>(): StackObjectLookup<T> {
    const objects = (run: ProgramRun): T[] => kubernetesObjects(run.recorder.resources).map((r) => unwrapSecrets(r.inputs) as T);
    const find = (run: ProgramRun, kind: string, name: string): T | undefined => objects(run).find((o) => o.kind === kind && o.metadata.name === name);
    const get = (run: ProgramRun, kind: string, name: string): T => {
        const found = find(run, kind, name);
        if (!found) throw new Error(`no ${kind} ${name}`);
        return found;
    };
    return { objects, find, get };
}
