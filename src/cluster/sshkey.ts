/**
 * An ed25519 SSH key pair made with node:crypto, written in OpenSSH's own formats: the private key
 * as `openssh-key-v1` (unencrypted, what `ssh-keygen -t ed25519 -N ''` writes) and the public key
 * as an `authorized_keys` line, which is what a Git host takes as a deploy key.
 */
import { createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";

function sshString(b: Buffer | string): Buffer {
  const body = typeof b === "string" ? Buffer.from(b, "utf8") : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

export interface SshKeyPair {
  /** `-----BEGIN OPENSSH PRIVATE KEY-----…` */
  privateKey: string;
  /** `ssh-ed25519 AAAA… comment` */
  publicKey: string;
}

function publicBlob(pub: Buffer): Buffer {
  return Buffer.concat([sshString("ssh-ed25519"), sshString(pub)]);
}

export function generateSshKey(comment: string): SshKeyPair {
  const { privateKey } = generateKeyPairSync("ed25519");
  const jwk = privateKey.export({ format: "jwk" }) as { d: string; x: string };
  const seed = Buffer.from(jwk.d, "base64url");
  const pub = Buffer.from(jwk.x, "base64url");
  const check = randomBytes(4);
  let priv = Buffer.concat([
    check,
    check,
    sshString("ssh-ed25519"),
    sshString(pub),
    sshString(Buffer.concat([seed, pub])),
    sshString(comment),
  ]);
  const pad: number[] = [];
  for (let i = 1; (priv.length + pad.length) % 8 !== 0; i++) pad.push(i);
  priv = Buffer.concat([priv, Buffer.from(pad)]);
  const body = Buffer.concat([
    Buffer.from("openssh-key-v1\0", "latin1"),
    sshString("none"),
    sshString("none"),
    sshString(""),
    u32(1),
    sshString(publicBlob(pub)),
    sshString(priv),
  ]).toString("base64");
  const lines = body.match(/.{1,70}/g) ?? [];
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join("\n")}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `ssh-ed25519 ${publicBlob(pub).toString("base64")} ${comment}`,
  };
}

/** The public key line of an `openssh-key-v1` ed25519 private key (to show it again on a re-run). */
export function publicKeyOf(privateKey: string, comment: string): string {
  const b64 = privateKey.replace(/-----(BEGIN|END) OPENSSH PRIVATE KEY-----/g, "").replace(/\s+/g, "");
  const buf = Buffer.from(b64, "base64");
  let off = "openssh-key-v1\0".length;
  const next = () => {
    const n = buf.readUInt32BE(off);
    const v = buf.subarray(off + 4, off + 4 + n);
    off += 4 + n;
    return v;
  };
  next(); // cipher
  next(); // kdf
  next(); // kdf options
  off += 4; // number of keys
  const blob = next();
  // Cross-check: node can read the key back.
  createPublicKey({
    key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), blob.subarray(blob.length - 32)]),
    format: "der",
    type: "spki",
  });
  return `ssh-ed25519 ${blob.toString("base64")} ${comment}`;
}
