// The spamd benchmark's messages, pure and deterministic (a seeded generator, so every variant and every run scans
// the same bytes): personal mail, HTML newsletters, spam-like offers and messages with a base64 attachment, the mix
// a personal mailbox receives; and single messages of an exact size for the size-limit measurements.

/** mulberry32: a small seeded PRNG, enough to vary words and sizes reproducibly. */
function generator(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

const WORDS = (
    "the meeting project report friday weekend family dinner photos invoice account order delivery schedule update team " +
    "please thanks regards question answer garden holiday train ticket school doctor appointment review draft budget " +
    "offer free limited save discount exclusive click unsubscribe winner guaranteed pharmacy loan credit bonus cash"
).split(" ");
const SPAMMY = ["Act now! Limited time offer", "100% free, no cost, risk free", "Click here to claim your prize", "Lowest price guaranteed, order today"];

function words(next: () => number, count: number): string {
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
        out.push(WORDS[Math.floor(next() * WORDS.length)]);
        if (i % 14 === 13) out.push(".\n");
    }
    return out.join(" ");
}

function headers(i: number, subject: string, contentType: string): string {
    return [
        `Received: from mx.example.net (mx.example.net [192.0.2.${(i % 250) + 1}]) by mail.example.test with ESMTPS; Mon, 16 Nov 2026 10:00:00 +0000`,
        `From: Sender ${i} <sender${i}@example.net>`,
        "To: alice@example.test",
        `Subject: ${subject}`,
        "Date: Mon, 16 Nov 2026 10:00:00 +0000",
        `Message-ID: <bench-${i}@example.net>`,
        "MIME-Version: 1.0",
        `Content-Type: ${contentType}`,
        "",
        "",
    ].join("\r\n");
}

function base64Lines(next: () => number, bytes: number): string {
    const raw = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) raw[i] = Math.floor(next() * 256);
    return (raw.toString("base64").match(/.{1,76}/g) ?? []).join("\r\n");
}

/** `count` messages, 1–120 KiB: a quarter each plain personal mail, HTML newsletter, spam-like HTML, mail with a PDF. */
export function corpus(count: number, seed = 1): string[] {
    const next = generator(seed);
    return Array.from({ length: count }, (_, i) => {
        const kind = i % 4;
        const text = words(next, 150 + Math.floor(next() * 1500));
        if (kind === 0) return headers(i, `Re: ${words(next, 4)}`, "text/plain; charset=utf-8") + text.replace(/\n/g, "\r\n") + "\r\n";
        if (kind === 1 || kind === 2) {
            const links = Array.from(
                { length: 5 + Math.floor(next() * 20) },
                (_, k) => `<p><a href="https://news${k}.example.org/item/${i}-${k}">${words(next, 6)}</a></p>`,
            );
            const pitch = kind === 2 ? `<h1>${SPAMMY[i % SPAMMY.length]}</h1>` : "";
            const html = `<html><body>${pitch}<p>${text.replace(/\n/g, "</p><p>")}</p>${links.join("")}</body></html>`;
            return headers(i, kind === 2 ? SPAMMY[i % SPAMMY.length] : `Newsletter ${i}`, "text/html; charset=utf-8") + html + "\r\n";
        }
        const boundary = `b${i}`;
        return (
            headers(i, `Invoice ${i}`, `multipart/mixed; boundary="${boundary}"`) +
            `--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text.replace(/\n/g, "\r\n")}\r\n` +
            `--${boundary}\r\nContent-Type: application/pdf; name="invoice-${i}.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n` +
            `${base64Lines(next, 8_000 + Math.floor(next() * 80_000))}\r\n--${boundary}--\r\n`
        );
    });
}

/**
 * One message of exactly `bytes` bytes, of one of the two shapes a large mail has: `attachment`, a short text part and
 * a base64 attachment that fills the rest (its last line padded to reach the size); or `text`, one text/plain body
 * of that size — SpamAssassin renders, tokenizes and matches all of it, so it is the costlier of the two to scan.
 */
export function sizedMessage(bytes: number, seed = 1, shape: "attachment" | "text" = "attachment"): string {
    const next = generator(seed + 1000);
    const boundary = "sized";
    const head =
        shape === "text"
            ? headers(seed, `Sized ${bytes}`, "text/plain; charset=utf-8")
            : headers(seed, `Sized ${bytes}`, `multipart/mixed; boundary="${boundary}"`) +
              `--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${words(next, 120).replace(/\n/g, "\r\n")}\r\n` +
              `--${boundary}\r\nContent-Type: application/octet-stream; name="data.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n`;
    const tail = shape === "text" ? "\r\n" : `\r\n--${boundary}--\r\n`;
    const room = bytes - Buffer.byteLength(head) - Buffer.byteLength(tail);
    if (room < 4)
        throw new Error(
            `sizedMessage: ${bytes} bytes is too small for the message's headers (${Buffer.byteLength(head) + Buffer.byteLength(tail) + 4} at least)`,
        );
    let body: string;
    if (shape === "text") {
        const lines: string[] = [];
        let size = 0;
        while (size < room) {
            const line = words(next, 12).replace(/\n/g, "") + "\r\n";
            lines.push(line);
            size += Buffer.byteLength(line);
        }
        body = lines.join("").slice(0, room - 2);
        body += "\r\n".slice(0, room - Buffer.byteLength(body));
        return head + body + tail;
    }
    // 76 base64 characters per line + CRLF = 78 bytes per 57 raw bytes.
    body = base64Lines(next, Math.floor(room / 78) * 57);
    while (Buffer.byteLength(body) > room) body = body.slice(0, body.lastIndexOf("\r\n"));
    const pad = room - Buffer.byteLength(body);
    body += pad >= 2 && body.length ? "\r\n" + "A".repeat(pad - 2) : "A".repeat(pad);
    return head + body + tail;
}
