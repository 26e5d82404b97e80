import { Snapshot } from "../src/cache";
import { AliasDoc, DomainDoc, MailboxDoc } from "../src/model";

/** A syntactically valid bcrypt hash (never verified in these tests). */
export const HASH = "{BLF-CRYPT}$2b$10$" + "abcdefghijklmnopqrstuv" + "0123456789ABCDEFGHIJKLMNOPQRSTU";

export const domain = (name: string): DomainDoc => ({ _id: `domain:${name}`, type: "domain", name });
export const mailbox = (address: string, extra: Partial<MailboxDoc> = {}): MailboxDoc => ({
  _id: `mailbox:${address}`,
  type: "mailbox",
  address,
  password: HASH,
  enabled: true,
  ...extra,
});
export const alias = (source: string, targets: string[]): AliasDoc => ({ _id: `alias:${source}`, type: "alias", source, targets });

export function snapshotOf(docs: { _id: string }[]): Snapshot {
  const s = new Snapshot();
  for (const d of docs) {
    const why = s.apply(d._id, false, d);
    if (why) throw new Error(`fixture ${d._id} is invalid: ${why}`);
  }
  return s;
}
