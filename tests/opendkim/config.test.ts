import { OPENDKIM_KEY_DIR, OPENDKIM_LISTENERS, OpenDkimSettings, dkimKeyFileName, renderOpenDkim } from "../../components/opendkim/config";
import { opendkimTestSettings } from "../kit/settings";

const base: OpenDkimSettings = { ...opendkimTestSettings, domains: ["example.test", "example.org"], authservId: "mail.example.test" };
const conf = (files: Record<string, string>) =>
    new Map(
        files["opendkim.conf"]
            .split("\n")
            .filter((l) => l && !l.startsWith("#"))
            .map((l) => [l.split(" ")[0], l.slice(l.indexOf(" ") + 1)]),
    );

describe("renderOpenDkim", () => {
    test("signs and verifies on the milter port, adding Authentication-Results", () => {
        const c = conf(renderOpenDkim(base));
        expect(c.get("Mode")).toBe("sv");
        expect(c.get("Socket")).toBe(`inet:${OPENDKIM_LISTENERS.milter.port}`);
        expect(c.get("MTA")).toBe("ORIGINATING");
        expect(c.get("AuthservID")).toBe("mail.example.test");
        expect(c.get("AlwaysAddARHeader")).toBe("yes");
        expect(c.get("RequireSafeKeys")).toBe("yes");
        expect(c.get("On-InternalError")).toBe("tempfail");
    });

    test("one KeyTable/SigningTable entry per domain with the selector; key files named by domain", () => {
        const f = renderOpenDkim({ ...base, selector: "s2026" });
        expect(f.KeyTable.trim().split("\n")).toEqual([
            `s2026._domainkey.example.test example.test:s2026:${OPENDKIM_KEY_DIR}/example.test.private`,
            `s2026._domainkey.example.org example.org:s2026:${OPENDKIM_KEY_DIR}/example.org.private`,
        ]);
        expect(f.SigningTable).toMatch(/^\*@example\.org s2026\._domainkey\.example\.org$/m);
        expect(dkimKeyFileName("example.org")).toBe("example.org.private");
    });

    test("internal hosts are loopback plus the configured pod range", () => {
        const f = renderOpenDkim({ ...base, internalHosts: ["10.244.0.0/16"] });
        expect(f.TrustedHosts.trim().split("\n")).toEqual(["127.0.0.1", "::1", "10.244.0.0/16"]);
    });

    test.each<[string, Partial<OpenDkimSettings>]>([
        ["domains", { domains: [] }],
        ["domains[1]", { domains: ["example.test", "Bad_Domain"] }],
        ["domains", { domains: ["example.test", "example.test"] }],
        ["selector", { selector: "a.b" }],
        ["authservId", { authservId: "" }],
        ["internalHosts[0]", { internalHosts: ["10.0.0.0"] }],
    ])("rejects a bad %s, naming it", (field, patch) => {
        expect(() => renderOpenDkim({ ...base, ...patch })).toThrow(new RegExp(`^${field.replace(/[[\]]/g, "\\$&")}: expected`));
    });
});
