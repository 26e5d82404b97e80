// Postfix's metrics: Debian's prometheus-postfix-exporter (images/postfix-exporter) as a sidecar in Postfix's pod.
// It counts what Postfix logs (postlogd writes the log to a file on a volume both containers mount) and asks the
// queue's showq socket for queue sizes at every scrape.
import type * as k8s from "@pulumi/kubernetes";
import type { Listener } from "../render";
import { POSTFIX_LOG } from "./config";

export const POSTFIX_EXPORTER_PORT = 9154;

/** The scrape port (a port name has at most 15 characters). */
export const POSTFIX_EXPORTER_LISTENER = { name: "metrics-postfix", port: POSTFIX_EXPORTER_PORT } as const satisfies Listener;

/**
 * The image's user. Its group is postdrop (GID 102 in both images): the queue's public/ folder, which holds the showq
 * socket, is postfix:postdrop mode 2710, so only that group may enter it. Postfix's own rights are unchanged.
 */
export const POSTFIX_EXPORTER_USER = { uid: 154, gid: 102 } as const;

/** The emptyDir that carries Postfix's log file from the Postfix container to the exporter. */
export const POSTFIX_LOG_VOLUME = "maillog";

/**
 * The postlogd file stays below the size at which the entrypoint empties it (MAILLOG_MAX_BYTES, 8 MiB) plus a minute's
 * growth. Over this limit the kubelet evicts the pod, so it is kept well above that.
 */
export const POSTFIX_LOG_VOLUME_LIMIT = "64Mi";

/** Measured on the sidecar (tests/postfix/exporter.int.test.ts): ~13 MiB PSS idle, ~15 MiB after the mail and scrapes. */
export const POSTFIX_EXPORTER_RESOURCES = { requests: { cpu: "5m", memory: "16Mi" }, limits: { memory: "48Mi" } } as const;

/**
 * The exporter's metric names that tests/postfix/exporter.int.test.ts saw move after one delivered, one rejected and one
 * deferred message (the queue histograms count the deferred one under queue="deferred").
 */
export const POSTFIX_EXPORTER_METRICS = [
    "postfix_smtpd_connects_total",
    "postfix_smtpd_disconnects_total",
    "postfix_smtpd_messages_processed_total",
    "postfix_smtpd_messages_rejected_total",
    "postfix_cleanup_messages_processed_total",
    "postfix_qmgr_messages_inserted_receipients",
    "postfix_qmgr_messages_inserted_size_bytes",
    "postfix_qmgr_messages_removed_total",
    "postfix_lmtp_delivery_delay_seconds",
    "postfix_showq_message_size_bytes",
    "postfix_showq_message_age_seconds",
] as const;

export interface PostfixExporterArgs {
    image: string;
    imagePullPolicy: string;
    /** The pod's volume holding Postfix's queue (the StatefulSet's claim). */
    queueVolume: string;
    /** Where the Postfix container mounts it (queue_directory). */
    queueDirectory: string;
}

export interface PostfixExporterSidecar {
    /** Goes beside the Postfix container in the pod's `containers`. */
    container: k8s.types.input.core.v1.Container;
    /** Goes into the pod's `volumes`. */
    volumes: k8s.types.input.core.v1.Volume[];
    /** Go into the Postfix container's `volumeMounts`: where postlogd writes the log file. */
    postfixMounts: k8s.types.input.core.v1.VolumeMount[];
}

/**
 * The exporter sidecar, restricted (non-root, read-only root and mounts, no capabilities). It sees the queue volume
 * read-only: the showq socket answers on a read-only mount, and the group postdrop opens nothing else there that it
 * could change. No probes: the pod's readiness must not depend on its metrics.
 */
export function postfixExporterSidecar(args: PostfixExporterArgs): PostfixExporterSidecar {
    return {
        container: {
            name: "postfix-exporter",
            image: args.image,
            imagePullPolicy: args.imagePullPolicy,
            args: [`--web.listen-address=:${POSTFIX_EXPORTER_PORT}`, `--postfix.showq_path=${args.queueDirectory}/public/showq`],
            env: [{ name: "POSTFIX_LOG_FILE", value: POSTFIX_LOG.file }],
            ports: [{ name: POSTFIX_EXPORTER_LISTENER.name, containerPort: POSTFIX_EXPORTER_PORT, protocol: "TCP" }],
            resources: POSTFIX_EXPORTER_RESOURCES,
            securityContext: {
                runAsNonRoot: true,
                runAsUser: POSTFIX_EXPORTER_USER.uid,
                runAsGroup: POSTFIX_EXPORTER_USER.gid,
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ["ALL"] },
                seccompProfile: { type: "RuntimeDefault" },
            },
            volumeMounts: [
                { name: POSTFIX_LOG_VOLUME, mountPath: POSTFIX_LOG.directory, readOnly: true },
                { name: args.queueVolume, mountPath: args.queueDirectory, readOnly: true },
            ],
        },
        volumes: [{ name: POSTFIX_LOG_VOLUME, emptyDir: { sizeLimit: POSTFIX_LOG_VOLUME_LIMIT } }],
        postfixMounts: [{ name: POSTFIX_LOG_VOLUME, mountPath: POSTFIX_LOG.directory }],
    };
}
