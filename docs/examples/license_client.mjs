// Check a sellix-lite license from your program (docs/licenses.md): activate once, keep the
// signed lease, verify it offline at every start, re-validate it online before it ends, and
// deactivate on uninstall.
//
// Node 18 or later, no packages: `fetch` for HTTP, `node:crypto` verifies the lease.
//
//     node license_client.mjs activate LICENSE_KEY | check | validate | deactivate
//
// SHOP_URL and PRODUCT_ID would be constants of your program; here they come from the
// environment, as does LICENSE_STATE, the file the license is kept in.

import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";

const SHOP_URL = process.env.SHOP_URL; // your shop's public URL: the leases' issuer
const PRODUCT_ID = process.env.PRODUCT_ID; // the product this program is
const STATE = process.env.LICENSE_STATE || "license.json";
// Keys bought in the test shop are for your own tests; a release build refuses them.
const ALLOW_TEST_KEYS = process.env.LICENSE_ALLOW_TEST === "1";
const LEEWAY = 60; // seconds of clock difference tolerated

class NotLicensed extends Error {}
// The shop did not answer now (no network, a 5xx, or 429: too many checks).
class Unreachable extends NotLicensed {}

// POST JSON to the shop's public license API: its status and JSON answer.
async function post(path, body) {
  let response;
  try {
    response = await fetch(SHOP_URL + path, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), signal: AbortSignal.timeout(10000),
    });
  } catch (error) {
    throw new Unreachable(`the shop is unreachable: ${error.message}`);
  }
  if (response.status === 429) {
    throw new Unreachable(`too many checks; retry in ${response.headers.get("Retry-After")} s`);
  }
  if (response.status >= 500) throw new Unreachable(`the shop answered ${response.status}`);
  return [response.status, await response.json()];
}

// What tells this machine from another, hashed: the same machine activates once.
function fingerprint() {
  const macs = Object.values(os.networkInterfaces()).flat()
    .filter((nic) => !nic.internal).map((nic) => nic.mac).sort();
  return crypto.createHash("sha256").update(`${macs[0]}:${os.hostname()}`).digest("hex");
}

// The shop's public keys, fetched once and kept with the lease (pinned).
async function fetchJwks() {
  const response = await fetch(`${SHOP_URL}/.well-known/jwks.json`,
    { signal: AbortSignal.timeout(10000) });
  if (!response.ok) throw new Unreachable(`the keys answered ${response.status}`);
  return response.json();
}

const decode = (part) => JSON.parse(Buffer.from(part, "base64url"));

// The lease's claims, if it is genuine, current and for this program and machine.
function verify(state) {
  const [header, payload, signature] = state.lease.split(".");
  const { alg, kid } = decode(header);
  const jwk = state.jwks.keys.find((key) => key.kid === kid);
  if (alg !== "EdDSA" || !jwk) throw new NotLicensed(`the lease is not valid: ${alg}, ${kid}`);
  const key = crypto.createPublicKey({ key: jwk, format: "jwk" });
  const genuine = crypto.verify(null, Buffer.from(`${header}.${payload}`), key,
    Buffer.from(signature, "base64url"));
  if (!genuine) throw new NotLicensed("the lease is not valid: bad signature");
  const claims = decode(payload);
  const now = Date.now() / 1000;
  if (claims.iss !== SHOP_URL) throw new NotLicensed(`the lease is from ${claims.iss}`);
  if (!(now < claims.exp + LEEWAY)) throw new NotLicensed("the lease has ended");
  if (!(claims.iat <= now + LEEWAY)) throw new NotLicensed("the lease is from the future");
  const lic = claims.lic;
  if (lic.status !== "active" || lic.product_id !== PRODUCT_ID) {
    throw new NotLicensed(`the lease is for a ${lic.status} license of ${lic.product_id}`);
  }
  if (lic.instance_id !== state.instance_id) throw new NotLicensed("the lease is for another machine");
  if (lic.mode !== "live" && !ALLOW_TEST_KEYS) {
    throw new NotLicensed("this is a test-mode key, which only works in the test shop");
  }
  return claims;
}

// Keep a new lease, after checking it (and fetching the keys again if it names a new one).
async function save(state, lease) {
  state = { ...state, lease };
  const { kid } = decode(lease.split(".")[0]);
  if (!state.jwks.keys.some((key) => key.kid === kid)) state.jwks = await fetchJwks();
  const claims = verify(state);
  fs.writeFileSync(STATE, JSON.stringify(state));
  return claims;
}

async function activate(licenseKey) {
  const [status, answer] = await post("/v1/licenses/activate", {
    license_key: licenseKey, instance_name: os.hostname() || "this computer",
    fingerprint: fingerprint(),
  });
  if (status !== 200 && status !== 201) {
    throw new NotLicensed(answer.errors?.license_key || answer.detail);
  }
  const state = { license_key: licenseKey, instance_id: answer.instance.id, jwks: await fetchJwks() };
  return save(state, answer.lease);
}

const REASONS = {
  disabled: "the license was disabled",
  expired: "the license has expired",
  unknown_instance: "this machine is no longer activated",
};

// Ask the shop whether the license still holds, for a fresh lease.
async function validate(state) {
  const [status, answer] = await post("/v1/licenses/validate", {
    license_key: state.license_key, instance_id: state.instance_id,
  });
  if (status === 200 && answer.valid) return save(state, answer.lease);
  // Not valid, or no such key: the old lease is honoured no more.
  if (status === 200 || status === 404) fs.rmSync(STATE);
  throw new NotLicensed(REASONS[answer.reason] || answer.detail);
}

// At start: the stored lease, offline, while less than half of its time has passed; else a
// fresh one from the shop — or the stored one while the shop can't answer.
async function check(state) {
  let claims = null;
  try {
    claims = verify(state);
  } catch (error) {
    if (!(error instanceof NotLicensed)) throw error;
  }
  if (claims && Date.now() / 1000 < (claims.iat + claims.exp) / 2) return [claims, "offline"];
  try {
    return [await validate(state), "renewed online"];
  } catch (error) {
    if (!(error instanceof Unreachable) || claims === null) throw error;
    return [claims, "offline: the shop did not answer"];
  }
}

// On uninstall: free this machine's activation.
async function deactivate(state) {
  const [status, answer] = await post("/v1/licenses/deactivate", {
    license_key: state.license_key, instance_id: state.instance_id,
  });
  if (status !== 200) throw new NotLicensed(answer.detail);
  fs.rmSync(STATE);
}

async function main(command, ...args) {
  let claims, how;
  if (command === "activate") {
    [claims, how] = [await activate(...args), "activated"];
  } else {
    if (!fs.existsSync(STATE)) throw new NotLicensed("not activated on this machine");
    const state = JSON.parse(fs.readFileSync(STATE, "utf8"));
    if (command === "deactivate") {
      await deactivate(state);
      console.log("deactivated");
      return;
    }
    [claims, how] = command === "check" ? await check(state) : [await validate(state), "validated"];
  }
  const until = new Date(claims.exp * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  console.log(`licensed (${how}): ${claims.sub} until ${until}`);
}

main(...process.argv.slice(2)).catch((error) => {
  if (!(error instanceof NotLicensed)) throw error;
  console.error(`not licensed: ${error.message}`);
  process.exitCode = 1;
});
