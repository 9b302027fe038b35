// The console's journey through a client generated from the served OpenAPI
// document (openapi-typescript types, openapi-fetch calls): sign up, create
// three customers, search, edit with a conflict, both photo flows, delete
// and restore, read the history. tests/clients/run.sh compiles it with
// `tsc --strict` first; `typed` refuses, at compile time, any happy-path
// value whose type is `unknown` or `any`.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

type Schemas = components["schemas"];
/** `never` for `unknown` and `any`, so a value of those types cannot be passed. */
type Known<T> = unknown extends T ? never : T;

function typed<T>(value: T & Known<T>): T {
  return value;
}

function check(condition: boolean, what: string): void {
  if (!condition) {
    throw new Error(what);
  }
}

/** The body of an expected answer; anything else fails the journey. */
async function ok<T>(
  call: Promise<{ data?: T; response: Response }>,
  status: number,
  what: string,
): Promise<T> {
  const { data, response } = await call;
  if (response.status !== status || data === undefined) {
    throw new Error(`${what}: ${response.status} ${await response.clone().text()}`);
  }
  return data;
}

/** A valid grey PNG, made here so that the journey needs no files. */
function png(width: number, height: number): Blob {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (bytes: Uint8Array): number => {
    let c = 0xffffffff;
    for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const u32 = (n: number): number[] => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  const chunk = (kind: string, data: number[]): number[] => {
    const body = [...kind].map((ch) => ch.charCodeAt(0)).concat(data);
    return u32(data.length).concat(body, u32(crc(Uint8Array.from(body))));
  };
  // Stored (uncompressed) deflate blocks keep the journey free of zlib.
  const rows: number[] = [];
  for (let y = 0; y < height; y++) rows.push(0, ...new Array<number>(width).fill(0x80));
  const adler = rows.reduce(
    ([a, b], byte) => [(a + byte) % 65521, (b + a + byte) % 65521],
    [1, 0],
  );
  const deflate = [0x78, 0x01, 0x01, rows.length & 255, rows.length >>> 8,
    ~rows.length & 255, (~rows.length >>> 8) & 255, ...rows, ...u32(((adler[1] << 16) | adler[0]) >>> 0)];
  const bytes = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
    .concat(chunk("IHDR", [...u32(width), ...u32(height), 8, 0, 0, 0, 0]))
    .concat(chunk("IDAT", deflate), chunk("IEND", []));
  return new Blob([Uint8Array.from(bytes)], { type: "image/png" });
}

function multipart(body: Schemas["UploadForm"]): FormData {
  const form = new FormData();
  form.append("file", body.file, "photo.png");
  if (body.customer_id !== undefined) form.append("customer_id", body.customer_id);
  return form;
}

async function main(base: string): Promise<void> {
  const suffix = Date.now().toString();
  const account = typed<Schemas["SignupResponse"]>(
    await ok(
      createClient<paths>({ baseUrl: base }).POST("/v1/signup", {
        body: {
          company_name: "Analytical Engines",
          name: "Ada",
          email: `ada-${suffix}@example.com`,
          password: "correct horse battery",
        },
      }),
      201,
      "signup",
    ),
  );
  const client = createClient<paths>({
    baseUrl: base,
    headers: { Authorization: `Bearer ${account.access_token}` },
  });

  const created: Schemas["CustomerDto"][] = [];
  let token = "";
  for (const [name, surname] of [["Ada", "Lovelace"], ["Alan", "Turing"], ["Grace", "Hopper"]]) {
    const call = client.POST("/v1/customers", { body: { name, surname } });
    const customer = typed(await ok(call, 201, `create ${surname}`));
    check(customer.company_id === account.company.id, "created in the caller's company");
    token = (await call).response.headers.get("x-consistency-token") ?? "";
    created.push(customer);
  }
  const [ada, alan, grace] = created;

  // Search, reading the last create (read-your-writes through its token).
  const page = typed(
    await ok(
      client.GET("/v1/customers", {
        params: { query: { q: "turing" }, header: { "X-Consistency-Token": token } },
      }),
      200,
      "search",
    ),
  );
  const surnames: string[] = page.items.map((item) => item.surname);
  check(JSON.stringify(surnames) === '["Turing"]', `search found ${surnames}`);

  // Edit with If-Match; the same version again is a conflict (412).
  const first = `"${alan.version}"`;
  const edited = typed(
    await ok(
      client.PATCH("/v1/customers/{id}", {
        params: { path: { id: alan.id }, header: { "If-Match": first } },
        body: { phone: "+44 20 7946 0000" },
      }),
      200,
      "edit",
    ),
  );
  check(edited.phone === "+44 20 7946 0000" && edited.version > alan.version, "edited");
  const stale = await client.PATCH("/v1/customers/{id}", {
    params: { path: { id: alan.id }, header: { "If-Match": first } },
    body: { notes: "lost update" },
  });
  const conflict = typed<Schemas["Problem"] | undefined>(stale.error);
  check(stale.response.status === 412 && conflict?.status === 412, "stale edit is 412");

  // Photo, option 1: upload, then attach.
  const photo = typed(
    await ok(
      client.POST("/v1/photos", { body: { file: png(4, 3) }, bodySerializer: multipart }),
      201,
      "upload",
    ),
  );
  const shown = typed(
    await ok(
      client.PUT("/v1/customers/{id}/photo", {
        params: { path: { id: ada.id } },
        body: { photo_id: photo.id },
      }),
      200,
      "attach",
    ),
  );
  check(shown.photo?.id === photo.id, "the photo is shown");

  // Photo, option 2: upload for a customer; the policy attaches it.
  const upload = client.POST("/v1/photos", {
    body: { file: png(4, 3), customer_id: grace.id },
    bodySerializer: multipart,
  });
  const forGrace = typed(await ok(upload, 201, "upload for a customer"));
  const policyToken = (await upload).response.headers.get("x-consistency-token") ?? "";
  const attached = typed(
    await ok(
      client.GET("/v1/customers/{id}", {
        params: { path: { id: grace.id }, header: { "X-Consistency-Token": policyToken } },
      }),
      200,
      "read after the policy",
    ),
  );
  check(attached.photo?.id === forGrace.id, "the policy attached the photo");

  // Delete, then restore.
  const deleted = await client.DELETE("/v1/customers/{id}", { params: { path: { id: grace.id } } });
  check(deleted.response.status === 204, "deleted");
  const restored = typed(
    await ok(
      client.POST("/v1/customers/{id}/restore", { params: { path: { id: grace.id } } }),
      200,
      "restore",
    ),
  );
  check(restored.deleted_at === null || restored.deleted_at === undefined, "restored");

  // History: who changed what, oldest first.
  const history = typed(
    await ok(
      client.GET("/v1/customers/{id}/history", { params: { path: { id: grace.id } } }),
      200,
      "history",
    ),
  );
  const kinds: string[] = history.items.map((entry) => entry.type);
  const sequences: number[] = history.items.map((entry) => entry.sequence);
  check(sequences.every((s, i) => i === 0 || s > sequences[i - 1]), "oldest first");
  check(kinds[0] === "CustomerRegistered" && kinds.at(-1) === "CustomerRestored", `${kinds}`);
  console.log(`typescript client journey: ok (${kinds.length} history entries)`);
}

main(process.argv[2]).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
