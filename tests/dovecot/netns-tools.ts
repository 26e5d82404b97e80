// Helpers run with `nsenter --net=<pod netns> node --import tsx netns-tools.ts …`, because a pod's network namespace
// has only its own loopback and the test process cannot open sockets there:
//   forward PORT UNIX_PATH   listen on 127.0.0.1:PORT and relay each connection to a unix socket (a service that runs
//                            on the host, e.g. couchmail, appears on the pod's loopback like a sidecar's port); prints
//                            "forwarding", then what clients send, one JSON string per chunk (to see Dovecot's requests)
//   logins JSON              IMAP logins over implicit TLS; prints one JSON result per line (see LoginPlan)
import * as net from "net";
import * as tls from "tls";

export interface LoginAttempt {
    user: string;
    password: string;
    /** Client address to bind (must be configured on the pod's loopback). */
    source: string;
}

export interface LoginPlan {
    host: string;
    port: number;
    /** Each attempt runs as one worker; with `loopMs` a worker repeats its attempt on a new connection until then. */
    attempts: LoginAttempt[];
    loopMs?: number;
}

export interface LoginResult {
    user: string;
    source: string;
    /** The tagged reply to LOGIN, or why there was none. */
    reply: string;
    ok: boolean;
    startedMs: number;
    ms: number;
}

const quote = (s: string) => `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`;

/** One connection, greeting, LOGIN, and the tagged reply (then the connection is dropped). */
function login(plan: LoginPlan, a: LoginAttempt, t0: number): Promise<LoginResult> {
    const started = Date.now();
    return new Promise((resolve) => {
        let buf = "";
        let sent = false;
        const done = (reply: string) => {
            clearTimeout(timer);
            sock.destroy();
            resolve({ user: a.user, source: a.source, reply, ok: /^a OK/.test(reply), startedMs: started - t0, ms: Date.now() - started });
        };
        const timer = setTimeout(() => done("(timeout)"), 90_000);
        const tcp = net.connect({ host: plan.host, port: plan.port, localAddress: a.source });
        const sock = tls.connect({ socket: tcp, rejectUnauthorized: false });
        tcp.on("error", (e) => done(`(error ${e.message})`));
        sock.setEncoding("utf8");
        sock.on("data", (chunk: string) => {
            buf += chunk;
            let nl: number;
            while ((nl = buf.indexOf("\r\n")) >= 0) {
                const line = buf.slice(0, nl);
                buf = buf.slice(nl + 2);
                if (!sent && line.startsWith("* OK")) {
                    sent = true;
                    sock.write(`a LOGIN ${quote(a.user)} ${quote(a.password)}\r\n`);
                } else if (line.startsWith("a ")) {
                    done(line);
                } else if (line.startsWith("* BYE")) {
                    done(line);
                }
            }
        });
        sock.on("error", (e) => done(`(error ${e.message})`));
        sock.on("close", () => done("(closed)"));
    });
}

async function logins(plan: LoginPlan): Promise<void> {
    const t0 = Date.now();
    const until = t0 + (plan.loopMs ?? 0);
    await Promise.all(
        plan.attempts.map(async (a) => {
            do {
                const r = await login(plan, a, t0);
                process.stdout.write(JSON.stringify(r) + "\n");
            } while (Date.now() < until);
        }),
    );
}

function forward(port: number, path: string): void {
    net.createServer((client) => {
        const upstream = net.connect(path);
        client.on("data", (c: Buffer) => process.stdout.write(JSON.stringify(c.toString("utf8")) + "\n"));
        client.pipe(upstream).pipe(client);
        const close = () => {
            client.destroy();
            upstream.destroy();
        };
        client.on("error", close);
        upstream.on("error", close);
    }).listen(port, "127.0.0.1", () => process.stdout.write("forwarding\n"));
}

if (require.main === module) {
    const [cmd, ...args] = process.argv.slice(2);
    if (cmd === "forward") forward(Number(args[0]), args[1]);
    else if (cmd === "logins") {
        logins(JSON.parse(args[0]) as LoginPlan).catch((e) => {
            console.error(e);
            process.exit(1);
        });
    } else {
        console.error("usage: netns-tools.ts forward PORT UNIX_PATH | logins JSON");
        process.exit(2);
    }
}
