// An unmodified AWS SDK for JavaScript v3 application, as a pod would run it:
// an S3 client with the SDK's default credential provider chain and nothing
// else configured. Wherever the chain finds credentials (the container
// endpoint named by AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI, or
// instance metadata) is the SDK's own choice.
//
// It writes E2E_BODY to s3://E2E_BUCKET/E2E_KEY on E2E_S3_ENDPOINT, reads it
// back, and prints one JSON line for the e2e suite: the SDK's version, which
// provider answered, and the subject of the session token (MinIO's session
// tokens are JWTs naming the web identity, i.e. the pod's ServiceAccount).
import { createRequire } from "node:module";
import { S3Client, PutObjectCommand, GetObjectCommand } from "@aws-sdk/client-s3";

const require = createRequire(import.meta.url);
const version = (name) => require(`${name}/package.json`).version;

function subject(token) {
  const parts = (token || "").split(".");
  if (parts.length !== 3) return "";
  try {
    return JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8")).sub || "";
  } catch {
    return "";
  }
}

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const result = {
  client: "aws-sdk-js-v3",
  version: `@aws-sdk/client-s3 ${version("@aws-sdk/client-s3")}, credential-provider-node ${version("@aws-sdk/credential-provider-node")}, node ${process.version}`,
};

try {
  const bucket = need("E2E_BUCKET");
  const key = need("E2E_KEY");
  const body = need("E2E_BODY");
  const client = new S3Client({ endpoint: need("E2E_S3_ENDPOINT"), forcePathStyle: true });
  const creds = await client.config.credentials();
  result.provider = Object.keys(creds.$source || {}).join(",");
  result.sub = subject(creds.sessionToken);
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  const got = await (await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body.transformToString();
  if (got !== body) throw new Error(`read back ${got.length} bytes that differ from the ${body.length} written`);
  result.ok = true;
  console.log(JSON.stringify(result));
} catch (err) {
  result.ok = false;
  result.error = `${err.name}: ${err.message}`;
  console.log(JSON.stringify(result));
  process.exitCode = 1;
}
