// The Webmail component under mocks (schema-valid objects, Pod Security "restricted", the NetworkPolicy the issue
// asks for) and its pure renderer (TLS verified against the mail host name, cookies, headers, validation).
import { DOVECOT_LISTENERS } from "../../components/dovecot/config";
import { POSTFIX_LISTENERS } from "../../components/postfix/config";
import { WEBMAIL_DEFAULTS, WEBMAIL_LISTENERS, WebmailSettings, maxUploadBytes, phpLiteral, renderWebmail } from "../../components/webmail/config";
import { WEBMAIL_UID, Webmail, webmailTmpSize } from "../../components/webmail";
import { checkPod } from "../kit/cluster/psa";
import type { PodTemplate } from "../kit/cluster/objects";
import { schemaErrors } from "../kit/k8s-schema";
import { MockRecorder } from "../kit/mocks";

const settings: WebmailSettings = {
    ...WEBMAIL_DEFAULTS,
    hostname: "webmail.example.com",
    mailHostname: "mail.example.com",
    imapHost: "dovecot",
    smtpHost: "postfix",
    messageSizeLimit: 26214400,
};

type Obj = { kind: string; metadata: { name: string }; spec: any; data?: Record<string, string> }; // eslint-disable-line @typescript-eslint/no-explicit-any

describe("Webmail component", () => {
    let recorder: MockRecorder;
    const object = (kind: string) => recorder.resources.map((r) => r.inputs as unknown as Obj).find((o) => o.kind === kind)!;

    beforeAll(async () => {
        recorder = await MockRecorder.install({});
        new Webmail("webmail", {
            namespace: "mail",
            image: "registry.example/webmail:1",
            imagePullPolicy: "IfNotPresent",
            settings: { ...settings, proxyProtocol: true, proxyTrustedNetworks: ["10.0.0.0/8"] },
            tlsSecretName: "mail-tls",
            storageSize: "256Mi",
            proxySources: [{ namespace: "ingress-nginx" }],
        });
        let last = -1;
        while (recorder.resources.length !== last) {
            last = recorder.resources.length;
            await new Promise((r) => setTimeout(r, 50));
        }
    });

    it("is a mail:index:Webmail whose objects are schema-valid", () => {
        expect(recorder.one("mail:index:Webmail").name).toBe("webmail");
        expect(schemaErrors(recorder.resources)).toEqual([]);
        expect(recorder.resources.map((r) => `${typeof r.inputs.kind === "string" ? r.inputs.kind : r.type}/${r.name}`).sort()).toEqual([
            "ConfigMap/webmail-config",
            "NetworkPolicy/webmail-network-policy",
            "PersistentVolumeClaim/webmail-data-size",
            "Service/webmail-service",
            "StatefulSet/webmail-statefulset",
            "mail:index:Webmail/webmail",
        ]);
    });

    it("passes Pod Security restricted, non-root on a read-only root, with HTTP probes through PHP-FPM", () => {
        const template = object("StatefulSet").spec.template;
        expect(checkPod("restricted", template as PodTemplate)).toEqual([]);
        const c = template.spec.containers[0];
        expect(c.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: WEBMAIL_UID, readOnlyRootFilesystem: true });
        expect(template.spec.securityContext.fsGroup).toBe(WEBMAIL_UID);
        expect(c.readinessProbe).toMatchObject({ httpGet: { path: "/healthz", port: "http" } });
        expect(c.livenessProbe).toMatchObject({ httpGet: { path: "/healthz", port: "http" } });
        expect(c.volumeMounts.map((m: { mountPath: string }) => m.mountPath).sort()).toEqual(
            ["/etc/mail/defaults/webmail", "/etc/mail/overrides/webmail", "/etc/mail/tls", "/run/mail", "/run/webmail", "/tmp", "/var/lib/webmail"].sort(),
        );
    });

    it("talks only to Dovecot 993/4190 and Postfix 465 (and DNS); takes HTTP(S) from anyone, PROXY twins from the edge", () => {
        const policy = object("NetworkPolicy").spec;
        const apps = (values: string[]) => [{ podSelector: { matchExpressions: [{ key: "app.kubernetes.io/name", operator: "In", values }] } }];
        expect(policy.egress.slice(1)).toEqual([
            {
                ports: [
                    { port: DOVECOT_LISTENERS.imaps.port, protocol: "TCP" },
                    { port: DOVECOT_LISTENERS.sieve.port, protocol: "TCP" },
                ],
                to: apps(["dovecot"]),
            },
            { ports: [{ port: POSTFIX_LISTENERS.submissions.port, protocol: "TCP" }], to: apps(["postfix"]) },
        ]);
        expect(policy.ingress).toEqual([
            {
                ports: [
                    { port: WEBMAIL_LISTENERS.https.port, protocol: "TCP" },
                    { port: WEBMAIL_LISTENERS.http.port, protocol: "TCP" },
                ],
            },
            {
                ports: [
                    { port: WEBMAIL_LISTENERS.https.proxy.port, protocol: "TCP" },
                    { port: WEBMAIL_LISTENERS.http.proxy.port, protocol: "TCP" },
                ],
                from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "ingress-nginx" } }, podSelector: { matchLabels: {} } }],
            },
        ]);
    });

    it("mounts the stack certificate and sizes its temp space from the message size limit", () => {
        const spec = object("StatefulSet").spec.template.spec;
        expect(spec.volumes).toContainEqual({ name: "tls", secret: { secretName: "mail-tls", defaultMode: 0o400 } });
        expect(spec.volumes).toContainEqual({ name: "tmp", emptyDir: { sizeLimit: webmailTmpSize(settings.messageSizeLimit, settings.maxWorkers) } });
        expect(webmailTmpSize(26214400, 4)).toBe("332Mi");
    });
});

describe("renderWebmail", () => {
    const files = renderWebmail(settings);

    it("verifies Dovecot's and Postfix's certificates against the public mail host name", () => {
        const tls = "['ssl' => ['verify_peer' => true, 'verify_peer_name' => true, 'allow_self_signed' => false, 'peer_name' => 'mail.example.com']]";
        expect(files["config.inc.php"]).toContain("$config['imap_host'] = 'ssl://dovecot:993';");
        expect(files["config.inc.php"]).toContain(`$config['imap_conn_options'] = ${tls};`);
        expect(files["config.inc.php"]).toContain("$config['smtp_host'] = 'ssl://postfix:465';");
        expect(files["config.inc.php"]).toContain(`$config['smtp_conn_options'] = ${tls};`);
        expect(files["managesieve.inc.php"]).toContain("$config['managesieve_host'] = 'tls://dovecot:4190';");
        expect(files["managesieve.inc.php"]).toContain(`$config['managesieve_conn_options'] = ${tls};`);
        const pinned = renderWebmail({ ...settings, upstreamCaFile: "/etc/mail/tls/tls.crt" });
        expect(pinned["config.inc.php"]).toContain("'peer_name' => 'mail.example.com', 'cafile' => '/etc/mail/tls/tls.crt']]");
    });

    it("session cookies Secure, HttpOnly, SameSite=Strict; headers HSTS, CSP with frame-ancestors; HTTP only redirects", () => {
        expect(files["config.inc.php"]).toContain("$config['use_https'] = true;");
        expect(files["config.inc.php"]).toContain("$config['session_samesite'] = 'Strict';");
        expect(files["php-fpm.conf"]).toMatch(/^php_admin_value\[session\.cookie_httponly\] = 1$/m);
        expect(files["nginx.conf"]).toMatch(/add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;/);
        expect(files["nginx.conf"]).toMatch(/add_header Content-Security-Policy "[^"]*frame-ancestors 'self'" always;/);
        expect(files["nginx.conf"]).toContain("location / { return 308 https://webmail.example.com$request_uri; }");
        expect(renderWebmail({ ...settings, publicHttpsPort: 8443 })["nginx.conf"]).toContain("return 308 https://webmail.example.com:8443$request_uri;");
        expect(files["nginx.conf"]).not.toContain("proxy_protocol");
    });

    it("with PROXY on, the twins carry the header and only the edge's networks are believed", () => {
        const nginx = renderWebmail({ ...settings, proxyProtocol: true, proxyTrustedNetworks: ["10.244.0.0/16"] })["nginx.conf"];
        expect(nginx).toContain(`listen ${WEBMAIL_LISTENERS.https.proxy.port} ssl proxy_protocol;`);
        expect(nginx).toContain(`listen ${WEBMAIL_LISTENERS.http.proxy.port} proxy_protocol;`);
        expect(nginx).toContain("set_real_ip_from 10.244.0.0/16;");
        expect(nginx).toContain("real_ip_header proxy_protocol;");
        expect(files["config.inc.php"]).toContain("$config['proxy_whitelist'] = [];");
    });

    it("markasjunk only moves (Dovecot's imapsieve trains); the password plugin only with an endpoint", () => {
        expect(files["markasjunk.inc.php"]).toContain("$config['markasjunk_learning_driver'] = null;");
        expect(files["markasjunk.inc.php"]).toContain("$config['markasjunk_move_spam'] = true;");
        expect(files["markasjunk.inc.php"]).toContain("$config['markasjunk_spam_mbox'] = 'Junk';");
        expect(files["config.inc.php"]).toContain("$config['plugins'] = ['client_address', 'managesieve', 'markasjunk'];");
        expect(files["password.inc.php"]).not.toContain("password_driver");
        const withApi = renderWebmail({
            ...settings,
            passwordApi: { url: "https://dovecot:10104/password", minimumLength: 12 },
            upstreamCaFile: "/etc/mail/tls/tls.crt",
        });
        expect(withApi["config.inc.php"]).toContain("'markasjunk', 'password']");
        expect(withApi["password.inc.php"]).toContain("$config['password_driver'] = 'httpapi';");
        expect(withApi["password.inc.php"]).toContain("$config['password_confirm_current'] = true;");
        expect(withApi["password.inc.php"]).toMatch(/^\$config\['password_http_client'\] = \['verify' => '\/etc\/mail\/tls\/tls\.crt', 'timeout' => 10\b/m);
    });

    it("caps uploads so a composed message fits Postfix's size limit", () => {
        expect(maxUploadBytes(26214400)).toBe(18 * 1024 * 1024);
        expect(files["php-fpm.conf"]).toMatch(/^php_admin_value\[upload_max_filesize\] = 18M$/m);
        expect(files["config.inc.php"]).toContain("$config['max_message_size'] = '18M';");
    });

    it("PHP literals escape quotes and backslashes", () => {
        expect(phpLiteral("it's a \\ test")).toBe("'it\\'s a \\\\ test'");
        expect(phpLiteral({ a: [1, true, null] })).toBe("['a' => [1, true, null]]");
    });

    it.each<[string, Partial<WebmailSettings>, RegExp]>([
        ["a host name without a dot", { mailHostname: "mail" }, /^mailHostname: /],
        ["a relative data dir", { dataDir: "var/lib" }, /^dataDir: /],
        ["a tiny message size limit", { messageSizeLimit: 1000 }, /^messageSizeLimit: expected an integer of at least 1048576 bytes, got 1000/],
        ["PROXY without trusted networks", { proxyProtocol: true }, /^proxyTrustedNetworks: expected at least one network/],
        ["a bad trusted network", { proxyProtocol: true, proxyTrustedNetworks: ["10.0.0.0/33"] }, /^proxyTrustedNetworks\[0\]: /],
        [
            "a plain-HTTP password endpoint",
            { passwordApi: { url: "http://dovecot/password", minimumLength: 12 } },
            /^passwordApi\.url: expected an https:\/\/ URL/,
        ],
        ["a weak minimum password length", { passwordApi: { url: "https://dovecot/password", minimumLength: 4 } }, /^passwordApi\.minimumLength: /],
    ])("refuses %s, naming the field", (_what, over, message) => {
        expect(() => renderWebmail({ ...settings, ...over })).toThrow(message);
    });
});
