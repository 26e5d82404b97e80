// Kubernetes resource quantities (k8s.io/apimachinery/pkg/api/resource): decimal and binary suffixes, millis.

const SUFFIXES: Record<string, number> = {
    "": 1,
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    P: 1e15,
    E: 1e18,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    Pi: 2 ** 50,
    Ei: 2 ** 60,
};

/** The value of a quantity ("64Mi" → 67108864, "20m" → 0.02, "1.5" → 1.5); throws on anything else. */
export function parseQuantity(quantity: string | number): number {
    if (typeof quantity === "number") return quantity;
    const m = /^([+-]?\d+(?:\.\d+)?)(?:[eE]([+-]?\d+))?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.exec(quantity.trim());
    if (!m) throw new Error(`"${quantity}" is not a Kubernetes quantity (e.g. 100m, 64Mi, 1Gi, 2)`);
    return Number(m[1]) * 10 ** Number(m[2] ?? 0) * SUFFIXES[m[3] ?? ""];
}

export const MI = 2 ** 20;
export const GI = 2 ** 30;

/** CPU in millicores and memory in bytes: the two resources the model schedules by. */
export interface Resources {
    cpuMilli: number;
    memory: number;
}

export const NO_RESOURCES: Resources = { cpuMilli: 0, memory: 0 };

export function requestsOf(requests: Record<string, string> | undefined): Resources {
    return {
        cpuMilli: requests?.cpu !== undefined ? Math.round(parseQuantity(requests.cpu) * 1000) : 0,
        memory: requests?.memory !== undefined ? parseQuantity(requests.memory) : 0,
    };
}

export const add = (a: Resources, b: Resources): Resources => ({ cpuMilli: a.cpuMilli + b.cpuMilli, memory: a.memory + b.memory });
export const max = (a: Resources, b: Resources): Resources => ({ cpuMilli: Math.max(a.cpuMilli, b.cpuMilli), memory: Math.max(a.memory, b.memory) });

export function formatResources(r: Resources): string {
    return `cpu ${r.cpuMilli}m, memory ${Math.round(r.memory / MI)}Mi`;
}
