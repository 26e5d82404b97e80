// Pure renderer for CouchDB's ini file, and where it goes in the official image.
import { checkPort, RenderedFiles } from "../render";

/**
 * Our ini's name in `/opt/couchdb/etc/local.d/`. CouchDB reads local.d in name order and writes runtime changes (the
 * hashed admin password, the node uuid, `_config` writes) to the *last* file it read; the official image's entrypoint
 * writes `docker.ini` there. A name sorting before `docker.ini` keeps that writable file last, since ours is a
 * read-only ConfigMap mount. (CouchDB docs, "Configuration › Introduction": "the last file in the chain is where
 * changes are written".)
 */
export const COUCHDB_INI_NAME = "10-mail.ini";

/** CouchDB's own Prometheus listener's default port ([prometheus] port). */
export const COUCHDB_METRICS_PORT = 17986;

export interface CouchDbIniSettings {
    /**
     * Open CouchDB's additional, unauthenticated Prometheus listener (`/_node/_local/_prometheus`,
     * https://docs.couchdb.org/en/stable/config/misc.html#configuration-of-prometheus-endpoint) on this port; the
     * pod's NetworkPolicy admits only the scraper to it. Undefined: closed.
     */
    metricsPort?: number;
}

/** Renders the ini that turns the official image into the stack's single-node, password-only datastore. */
export function renderCouchDbIni(settings: CouchDbIniSettings = {}): RenderedFiles {
    const metrics =
        settings.metricsPort === undefined
            ? []
            : ["[prometheus]", "additional_port = true", "bind_address = 0.0.0.0", `port = ${checkPort("metricsPort", settings.metricsPort)}`, ""];
    const ini = [
        // single_node creates the system databases; the database couchmail uses is created by couchmail.
        "[couchdb]",
        "single_node = true",
        "max_dbs_open = 100",
        "",
        // One node: system databases with n=3 would log "only 1 node(s)" warnings forever.
        "[cluster]",
        "n = 1",
        "",
        // Every request needs the admin's password, except the anonymous /_up that kubelet probes send.
        "[chttpd]",
        "bind_address = 0.0.0.0",
        "require_valid_user = true",
        "require_valid_user_except_for_up = true",
        "",
        ...metrics,
        "[log]",
        "writer = stderr",
        "level = warning",
        "",
    ].join("\n");
    return { [COUCHDB_INI_NAME]: ini };
}
