// The scrape comparison an e2e uses to prove metrics move with mail: it must report a metric that disappeared or
// stood still, and pass one that grew — on couchmail's real registry and on Dovecot's exposition format.
import type { Cache } from "../../couchmail/src/cache";
import { Metrics } from "../../couchmail/src/metrics";
import { seriesTotals, unmoved } from "./scrape";

const fakeCache = () => ({ snapshot: undefined, loaded: true, stale: false, lastFeedAliveAt: Date.now(), lastChangeAt: Date.now() }) as unknown as Cache;

test("sums the samples of each series, with or without labels and timestamps", () => {
    const totals = seriesTotals(
        [
            "# HELP dovecot_mail_delivery Histogram of LMTP deliveries",
            "# TYPE dovecot_mail_delivery histogram",
            'dovecot_mail_delivery_bucket{le="0.010000"} 0 1764658000123',
            'dovecot_mail_delivery_bucket{le="+Inf"} 2 1764658000123',
            "dovecot_mail_delivery_count 2 1764658000123",
            'couchmail_lookups_total{map="virtual_alias_maps",result="ok"} 3',
            'couchmail_lookups_total{map="userdb",result="notfound"} 1',
            'weird_total{text="a } b"} 1.5e1',
        ].join("\n"),
    );
    expect(Object.fromEntries(totals)).toEqual({
        dovecot_mail_delivery_bucket: 2,
        dovecot_mail_delivery_count: 2,
        couchmail_lookups_total: 4,
        weird_total: 15,
    });
});

test("couchmail's real registry: nothing moved until a lookup is answered", async () => {
    const metrics = new Metrics(fakeCache());
    const before = await metrics.registry.metrics();
    expect(unmoved("couchmail", before, await metrics.registry.metrics())).toEqual(["couchmail_lookups_total", "couchmail_lookup_duration_seconds_count"]);
    metrics.observe("virtual_mailbox_maps", "ok", process.hrtime.bigint());
    expect(unmoved("couchmail", before, await metrics.registry.metrics())).toEqual([]);
});

test("a metric missing from the second scrape is reported, even when it was there before", () => {
    const before = "dovecot_mail_delivery_count 1 1764658000123\n";
    expect(unmoved("dovecot", before, "")).toEqual(["dovecot_mail_delivery_count"]);
    expect(unmoved("dovecot", before, "dovecot_mail_delivery_count 1 1764658060123\n")).toEqual(["dovecot_mail_delivery_count"]);
    expect(unmoved("dovecot", before, "dovecot_mail_delivery_count 2 1764658060123\n")).toEqual([]);
});
