// Creates a blob container on Azurite with the account key (Shared Key
// authorization, Node's own crypto): tests/common/azurite.rs runs
// `node create-container.mjs URL ACCOUNT CONTAINER` with the key on stdin.
// Exits 0 when the container exists afterwards (201 or 409).
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";

const [url, account, container] = process.argv.slice(2);
const key = readFileSync(0, "utf8").trim();
const version = "2021-08-06";
const date = new Date().toUTCString();
const path = `${new URL(url).pathname.replace(/\/$/, "")}/${container}`;
const toSign = [
  "PUT", "", "", "", "", "", "", "", "", "", "", "",
  `x-ms-date:${date}`,
  `x-ms-version:${version}`,
  `/${account}${path}`,
  "restype:container",
].join("\n");
const signature = createHmac("sha256", Buffer.from(key, "base64"))
  .update(toSign, "utf8")
  .digest("base64");
const res = await fetch(`${url.replace(/\/$/, "")}/${container}?restype=container`, {
  method: "PUT",
  headers: {
    "x-ms-date": date,
    "x-ms-version": version,
    authorization: `SharedKey ${account}:${signature}`,
  },
});
const body = await res.text();
if (res.status !== 201 && res.status !== 409) {
  console.error(`PUT ${container}: ${res.status} ${body}`);
  process.exit(1);
}
