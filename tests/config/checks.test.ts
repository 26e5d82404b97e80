// The config reader and the renderers apply the same rules: a value the stack config accepts is one the renderer
// accepts, and the other way round.
import fc from "fast-check";
import { cidr, dnsbl, email, pinnedImage } from "../../components/config/checks";
import { checkCidr, checkDnsbl, checkEmail } from "../../components/render";
import { declaredKeys } from "../../components/config/reader";

const accepts = (check: (field: string, value: string) => string) => (value: string) => {
    try {
        check("field", value);
        return true;
    } catch {
        return false;
    }
};

describe("one rule per kind of value", () => {
    const octet = fc.integer({ min: 0, max: 255 });
    const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join("."));
    const networks = fc.oneof(
        fc.tuple(ipv4, fc.integer({ min: 0, max: 40 })).map(([ip, bits]) => `${ip}/${bits}`),
        fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 140 })).map(([ip, bits]) => `${ip}/${bits}`),
        fc.string(),
    );

    it("networks: the renderer accepts exactly what the reader accepts", () => {
        fc.assert(fc.property(networks, (value) => (cidr(value) === undefined) === accepts(checkCidr)(value)));
    });

    it("refuses what only looks like an IPv6 network", () => {
        for (const bad of ["fff:/64", "::::/8", "abc/64", "10.0.0.0/33", "fd00::/129", "10.0.0.0"]) expect(cidr(bad)).toMatch(/^expected a CIDR/);
        for (const good of ["10.0.0.0/8", "fd00::/8", "::/0", "2001:db8::1/128"]) expect(cidr(good)).toBeUndefined();
    });

    it("addresses: lower case only, a dot-atom local part, a real domain", () => {
        for (const good of ["postmaster@example.com", "a.b+tag@mail.example.org"]) expect(accepts(checkEmail)(good)).toBe(true);
        for (const bad of ["Postmaster@example.com", "a..b@example.com", ".a@example.com", "a@example", "postmaster", "a@-x.example.com"]) {
            expect(email(bad)).toMatch(/^expected a lowercase email address/);
            expect(accepts(checkEmail)(bad)).toBe(false);
        }
    });

    it("DNSBL entries: the shipped defaults pass the rule the config uses", () => {
        for (const site of declaredKeys().postfixDnsbls.default as string[]) expect(dnsbl(site)).toBeUndefined();
        expect(accepts(checkDnsbl)("zen.spamhaus.org;rm -rf")).toBe(false);
    });

    it("images: pinned by version, with or without a registry", () => {
        for (const good of ["couchdb:3.5.0", "registry.example.com:5000/mirror/couchdb:3.5.0"]) expect(pinnedImage(good)).toBeUndefined();
        for (const bad of ["couchdb", "couchdb:latest", "couchdb@sha256:abc", "couch db:3"]) expect(pinnedImage(bad)).toMatch(/^expected an image pinned/);
    });
});
